package proxy

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogWriter buffers log lines for an io.Writer such as os.Stderr and
// flushes them every interval and on Close, so that the access log costs a
// write system call per batch rather than one per request. A line is never
// split across writes: slog handlers write whole lines, and the buffer is
// flushed only between them.
type LogWriter struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	done chan struct{}
	wg   sync.WaitGroup
}

// NewLogWriter returns a LogWriter over w that flushes at least every
// interval (100ms when interval <= 0). Call Close to flush and stop it.
func NewLogWriter(w io.Writer, interval time.Duration) *LogWriter {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	l := &LogWriter{buf: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	l.wg.Add(1)
	go l.flushEvery(interval)
	return l
}

// Write buffers p; a full buffer is written through at once.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Flush writes what is buffered.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Flush()
}

// Close stops the periodic flush and flushes what is left.
func (l *LogWriter) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
	return l.Flush()
}

func (l *LogWriter) flushEvery(interval time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = l.Flush()
		case <-l.done:
			return
		}
	}
}
