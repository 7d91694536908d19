package verifier

import "slices"

// signerSet holds the distinct signers of one kind of document (image
// signatures, or attestations of one predicate type): the IDs of the keys,
// and the certificate identities (issuer and subject) with the policy's
// identity entries each one matches.
//
// A signer counts once, and so does an identity entry: the count is the
// keys plus the largest number of identities that can each be given an
// entry of their own (a bipartite matching). So one person whose
// certificates match two entries is one signer, however many certificates
// they used; and of two people who both match a broad entry, the one who
// also matches a narrow entry takes it, so that both count.
type signerSet struct {
	keys   []string
	people []person
}

// person is one certificate identity and the entries it matches.
type person struct {
	who     string
	entries []int
}

func (s *signerSet) addKey(id string) {
	if !slices.Contains(s.keys, id) {
		s.keys = append(s.keys, id)
	}
}

func (s *signerSet) addPerson(who string, entries []int) {
	for _, p := range s.people {
		if p.who == who {
			return // the same identity matches the same entries
		}
	}
	s.people = append(s.people, person{who: who, entries: entries})
}

// count is how many distinct signers the set holds.
func (s *signerSet) count() int { return len(s.keys) + len(s.matched()) }

// matched returns the entries a maximum matching gives the people, in
// the order of the people they were given to.
func (s *signerSet) matched() []int {
	if len(s.people) == 0 {
		return nil
	}
	owner := map[int]int{} // entry -> index of the person holding it
	for i := range s.people {
		s.augment(i, owner, map[int]bool{})
	}
	var out []int
	for i := range s.people {
		for e, o := range owner {
			if o == i {
				out = append(out, e)
			}
		}
	}
	return out
}

// augment tries to give person i an entry, moving others along an
// augmenting path (Kuhn's algorithm).
func (s *signerSet) augment(i int, owner map[int]int, seen map[int]bool) bool {
	for _, e := range s.people[i].entries {
		if seen[e] {
			continue
		}
		seen[e] = true
		o, taken := owner[e]
		if !taken || s.augment(o, owner, seen) {
			owner[e] = i
			return true
		}
	}
	return false
}
