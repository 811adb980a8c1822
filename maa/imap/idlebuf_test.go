package imap

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

// TestConnWriterLayout pins the imapserver fields the IDLE writer swap
// reaches by reflection: after an imapserver upgrade that renames them,
// this fails instead of idle connections silently costing 4 KiB more.
func TestConnWriterLayout(t *testing.T) {
	if !writerOffsets().ok {
		t.Fatal("imapserver.Conn has no bw *bufio.Writer / encMutex sync.Mutex: update idlebuf.go")
	}
}

// TestIdleWriterSwap: while a session is in IDLE its writer has the small
// buffer, updates longer than that buffer still reach the client whole,
// and after DONE the full-size buffer is back and a large response is
// written correctly.
func TestIdleWriterSwap(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	body := testMessage(1, "first")
	e.deliver(testAlice, "INBOX", body)

	e.srv.init() // the listeners' goroutines may still be running it
	conns := make(chan *imapserver.Conn, 1)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			conns <- c
			return e.srv.newSession(c)
		},
		Caps:         e.srv.caps,
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	rec, opts := newRecorder()
	c, err := imapclient.DialInsecure(ln.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-conns
	size := func() int {
		bw, mu := connWriter(sc)
		mu.Lock()
		defer mu.Unlock()
		return bw.Size()
	}
	if err := c.Login(testAlice, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != activeWriterSize {
		t.Fatalf("writer of a selected session: %d bytes, want %d", got, activeWriterSize)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for size() != idleWriterSize {
		if time.Now().After(deadline) {
			t.Fatalf("writer in IDLE: %d bytes, want %d", size(), idleWriterSize)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A FETCH update several times the idle buffer's size.
	var kws []string
	for i := range 20 {
		kws = append(kws, fmt.Sprintf("$keyword-number-%02d", i))
	}
	if _, err := e.st.StoreFlags(testAlice, "INBOX", []uint32{1}, store.FlagsAdd, kws); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 5*time.Second)
	rec.mu.Lock()
	got := rec.fetches[1]
	rec.mu.Unlock()
	for _, k := range kws {
		if !slices.Contains(got, imapv2.Flag(k)) {
			t.Fatalf("FETCH update during IDLE lacks %s: %v", k, got)
		}
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != activeWriterSize {
		t.Fatalf("writer after IDLE: %d bytes, want %d", got, activeWriterSize)
	}
	msgs, err := c.Fetch(imapv2.SeqSetNum(1), &imapv2.FetchOptions{BodySection: []*imapv2.FetchItemBodySection{{}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].FindBodySection(&imapv2.FetchItemBodySection{})) != string(normalizeCRLF([]byte(body))) {
		t.Fatalf("FETCH after IDLE: %+v", msgs)
	}
}
