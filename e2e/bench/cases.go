package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// caseSet is the set of case numbers a run measures.
type caseSet map[int]bool

// benchCase is one numbered measurement of the list.
type benchCase struct {
	num   int
	title string
	run   func(ctx context.Context, e *env, r *report)
}

// allCases lists the cases in the order they run.
var allCases = []benchCase{
	{1, "warm manifest GET and HEAD by tag", caseWarmTag},
	{2, "warm manifest GET by digest", caseWarmDigest},
	{3, "cold first pull of a signed image", caseCold},
	{4, "blob throughput", caseBlob},
	{5, "stampede on one cold signed tag", caseStampede},
	{6, "verification alone (Go benchmark)", caseVerify},
	{7, "growth of the decision cache (Go benchmark)", caseGrowth},
	{8, "full image pull by real clients", caseClients},
	{9, "slow readers of a large manifest", caseSlowReaders},
	{10, "soak: mixed traffic from 64 clients with reloads", caseSoak},
}

// parseCases reads "1,2,5" (or "all") into a caseSet.
func parseCases(s string) (caseSet, error) {
	set := caseSet{}
	if strings.TrimSpace(s) == "all" {
		for _, c := range allCases {
			set[c.num] = true
		}
		return set, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > len(allCases) {
			return nil, fmt.Errorf("-cases: %q is not a case number 1-%d", f, len(allCases))
		}
		set[n] = true
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("-cases: no case selected")
	}
	return set, nil
}

// any reports whether at least one of the given cases is selected.
func (s caseSet) any(nums ...int) bool {
	for _, n := range nums {
		if s[n] {
			return true
		}
	}
	return false
}

// String lists the selected cases, sorted.
func (s caseSet) String() string {
	var nums []int
	for n := range s {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	parts := make([]string, len(nums))
	for i, n := range nums {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}
