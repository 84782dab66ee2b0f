// Package tarpit is a TCP listener that accepts connections and never answers: a webhook
// or a Prometheus that hangs, for the tests of what canopy does when one does.
package tarpit

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Tarpit listens on loopback until the test ends.
type Tarpit struct {
	// URL is http://<its address>.
	URL      string
	accepted atomic.Int32
}

// New starts a Tarpit, closed with its connections when t ends.
func New(t testing.TB) *Tarpit {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &Tarpit{URL: "http://" + l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tp.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return tp
}

// Accepted is how many connections it took.
func (tp *Tarpit) Accepted() int32 { return tp.accepted.Load() }
