package proxy

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flusher goroutine and the test.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String(), s.writes
}

func TestLogWriterBatchesLinesAndFlushesOnClose(t *testing.T) {
	var out syncBuffer
	l := NewLogWriter(&out, time.Hour) // no periodic flush during the test
	for range 100 {
		if _, err := l.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := out.snapshot(); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, writes := out.snapshot()
	if got != strings.Repeat("line\n", 100) {
		t.Fatalf("after Close: %d bytes, want %d", len(got), 500)
	}
	if writes != 1 {
		t.Errorf("%d writes for 100 lines, want 1", writes)
	}
	if err := l.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
}

func TestLogWriterFlushesPeriodically(t *testing.T) {
	var out syncBuffer
	l := NewLogWriter(&out, 5*time.Millisecond)
	defer l.Close()
	if _, err := l.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := out.snapshot(); got == "hello\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("line not flushed within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
