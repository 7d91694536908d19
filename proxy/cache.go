package proxy

import (
	"container/list"
	"crypto/sha256"
	"strings"
	"sync"
	"time"
)

// cacheKey names verified manifest bytes: the upstream, the repository,
// the digest and the fingerprint of the client's Authorization header, so
// that bytes fetched with one client's credentials never reach another.
type cacheKey struct {
	registry string
	repo     string
	digest   [sha256.Size]byte
	cred     [sha256.Size]byte
}

// manifestCache keeps verified manifest bytes, LRU, bounded by their total
// size. An entry is content-addressed (its digest is the hash of its
// bytes), so it can be served by digest without asking upstream; the
// decision is still asked of the verifier each time. Entries also expire
// after ttl, so that revoked upstream access stops reaching the cache.
type manifestCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ttl   time.Duration
	ll    *list.List
	items map[cacheKey]*list.Element
	now   func() time.Time
}

type cacheEntry struct {
	key     cacheKey
	m       *manifest
	expires time.Time
}

// newManifestCache returns a cache of at most maxBytes; maxBytes <= 0
// keeps nothing.
func newManifestCache(maxBytes int64, ttl time.Duration) *manifestCache {
	return &manifestCache{max: maxBytes, ttl: ttl, ll: list.New(), items: map[cacheKey]*list.Element{}, now: time.Now}
}

func (c *manifestCache) get(k cacheKey) *manifest {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.remove(el)
		return nil
	}
	c.ll.MoveToFront(el)
	return e.m
}

func (c *manifestCache) add(k cacheKey, m *manifest) {
	n := int64(len(m.body))
	if c.max <= 0 || n > c.max {
		return
	}
	k.registry, k.repo = strings.Clone(k.registry), strings.Clone(k.repo)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.remove(el)
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{key: k, m: m, expires: c.now().Add(c.ttl)})
	c.size += n
	for c.size > c.max {
		c.remove(c.ll.Back())
	}
}

func (c *manifestCache) remove(el *list.Element) {
	e := c.ll.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.size -= int64(len(e.m.body))
}

// stats returns the entry count and total bytes.
func (c *manifestCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.size
}
