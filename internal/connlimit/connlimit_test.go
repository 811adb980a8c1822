package connlimit

import (
	"net"
	"testing"
)

func TestLimiter(t *testing.T) {
	l := New(3, 2)
	if !l.Admit("a") || !l.Admit("a") {
		t.Fatal("the first two from one address refused")
	}
	if l.Admit("a") {
		t.Fatal("a third from one address admitted (cap 2)")
	}
	if !l.Admit("b") {
		t.Fatal("another address refused under the total cap")
	}
	if l.Admit("c") {
		t.Fatal("a fourth connection admitted (total cap 3)")
	}
	l.Release("a")
	if !l.Admit("c") {
		t.Fatal("a released slot was not given back")
	}
	l.Release("b")
	l.Release("c")
	l.Release("a")
	if len(l.byIP) != 0 || l.open != 0 {
		t.Fatalf("after releasing all: %d open, %v", l.open, l.byIP)
	}
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{&net.UnixAddr{Name: "sock", Net: "unix"}, "sock"},
	} {
		if got := ClientIP(tc.addr); got != tc.want {
			t.Errorf("ClientIP(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
