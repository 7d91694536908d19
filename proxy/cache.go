package proxy

import (
	"container/list"
	"crypto/sha256"
	"strings"
	"sync"
	"time"
)

// cacheKey names verified manifest bytes: the upstream, the repository and
// the digest. The bytes are held once per key, whoever fetched them.
type cacheKey struct {
	registry string
	repo     string
	digest   [sha256.Size]byte
}

// credential is the fingerprint of an Authorization header as forwarded
// upstream; the zero value is "no credentials".
type credential [sha256.Size]byte

// credentialOf fingerprints an Authorization header.
func credentialOf(auth string) credential {
	if auth == "" {
		return credential{}
	}
	return sha256.Sum256([]byte(auth))
}

// maxReaders is how many credentials an entry remembers as allowed to read
// it; a credential past them asks upstream again (a HEAD).
const maxReaders = 16

// manifestCache keeps verified manifest bytes, LRU, bounded by their total
// size. An entry is content-addressed (its digest is the hash of its
// bytes), so it can be served by digest without fetching it again; the
// decision is still asked of the verifier each time. Bytes fetched with one
// client's credentials are served to another only once upstream has said
// that client may read them too (readers). Entries also expire after ttl,
// so that revoked upstream access stops reaching the cache.
type manifestCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ttl   time.Duration
	ll    *list.List
	items map[cacheKey]*list.Element
	repos map[repoKey]int // entries per repository
	now   func() time.Time
}

type repoKey struct{ registry, repo string }

type cacheEntry struct {
	key     cacheKey
	m       *manifest
	expires time.Time
	readers [maxReaders]credential
	nreader int // readers written so far; the ring wraps past maxReaders
}

func (e *cacheEntry) allows(c credential) bool {
	for i := range min(e.nreader, maxReaders) {
		if e.readers[i] == c {
			return true
		}
	}
	return false
}

func (e *cacheEntry) allow(c credential) {
	if !e.allows(c) {
		e.readers[e.nreader%maxReaders] = c
		e.nreader++
	}
}

// newManifestCache returns a cache of at most maxBytes; maxBytes <= 0
// keeps nothing.
func newManifestCache(maxBytes int64, ttl time.Duration) *manifestCache {
	return &manifestCache{max: maxBytes, ttl: ttl, ll: list.New(), items: map[cacheKey]*list.Element{},
		repos: map[repoKey]int{}, now: time.Now}
}

// get returns the bytes under k, and whether credential c is known to be
// allowed to read them.
func (c *manifestCache) get(k cacheKey, cred credential) (m *manifest, allowed bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.m, e.allows(cred)
}

// allow records that cred may read the bytes under k.
func (c *manifestCache) allow(k cacheKey, cred credential) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*cacheEntry).allow(cred)
	}
}

// add keeps m under k, readable by cred, and returns the bytes now held for
// k: the ones already there when they are the same document served the
// same way, so that one digest is held once however many clients fetch
// it, else m.
func (c *manifestCache) add(k cacheKey, m *manifest, cred credential) *manifest {
	n := int64(len(m.body))
	if c.max <= 0 || n > c.max {
		return m
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		e := el.Value.(*cacheEntry)
		if e.m.mediaType == m.mediaType && c.now().Before(e.expires) {
			e.allow(cred)
			c.ll.MoveToFront(el)
			return e.m
		}
		c.remove(el)
	}
	k.registry, k.repo = strings.Clone(k.registry), strings.Clone(k.repo)
	e := &cacheEntry{key: k, m: m, expires: c.now().Add(c.ttl)}
	e.allow(cred)
	c.items[k] = c.ll.PushFront(e)
	c.repos[repoKey{k.registry, k.repo}]++
	c.size += n
	for c.size > c.max {
		c.remove(c.ll.Back())
	}
	return m
}

func (c *manifestCache) remove(el *list.Element) {
	e := c.ll.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	rk := repoKey{e.key.registry, e.key.repo}
	if c.repos[rk]--; c.repos[rk] == 0 {
		delete(c.repos, rk)
	}
	c.size -= int64(len(e.m.body))
}

// holds reports whether any verified bytes of registry/repo are kept.
func (c *manifestCache) holds(registry, repo string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.repos[repoKey{registry, repo}] > 0
}

// stats returns the entry count and total bytes.
func (c *manifestCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.size
}
