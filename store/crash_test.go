package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const crashChildEnv = "POSTHORN_STORE_CRASH_CHILD"

// TestCrashChild is the child of TestKill9DuringAppends: it appends from
// several goroutines forever, printing "UID TOKEN" for each append once
// Append has returned (the message is durable).
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("only run as the child of TestKill9DuringAppends")
	}
	st, err := Open(path, Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				token := fmt.Sprintf("w%d-%d", w, i)
				d, err := st.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage(token, 3000+i%5*ChunkSize/2)})
				mu.Lock()
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(2)
				}
				fmt.Printf("%d %s\n", d.UID, token)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// TestKill9DuringAppends kills a process that is appending with SIGKILL
// and checks that the store opens afterwards with every acknowledged
// append present and intact.
func TestKill9DuringAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess")
	}
	path := filepath.Join(t.TempDir(), "posthorn.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	st.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint32]string{}
	r := bufio.NewReader(out)
	parse := func(line string) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] != "ERR" {
			uid, err := strconv.ParseUint(f[0], 10, 32)
			if err == nil {
				acked[uint32(uid)] = f[1]
				return
			}
		}
		if strings.HasPrefix(line, "ERR") {
			t.Fatalf("child: %s", line)
		}
	}
	for len(acked) < 150 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child output ended after %d acks: %v", len(acked), err)
		}
		parse(line)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// Lines written before the kill are still in the pipe: they count.
	rest, _ := io.ReadAll(r)
	for _, line := range strings.SplitAfter(string(rest), "\n") {
		if strings.HasSuffix(line, "\n") {
			parse(line)
		}
	}
	cmd.Wait()

	st, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer st.Close()
	msgs, err := st.Messages(alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[uint32]Message{}
	for _, m := range msgs {
		byUID[m.UID] = m
	}
	for uid, token := range acked {
		m, ok := byUID[uid]
		if !ok {
			t.Fatalf("acknowledged append UID %d (%s) lost", uid, token)
		}
		bi, err := st.BlobInfo(m.BlobID)
		if err != nil || bi.Envelope.Subject != token {
			t.Fatalf("UID %d: subject %q, want %q (%v)", uid, bi.Envelope.Subject, token, err)
		}
		b, _ := st.OpenMessage(m)
		data, err := io.ReadAll(b)
		if err != nil || int64(len(data)) != m.Size || !bytes.Contains(data, []byte("Subject: "+token+"\r\n")) {
			t.Fatalf("UID %d unreadable: %v", uid, err)
		}
	}
	t.Logf("%d acknowledged appends, %d messages after kill -9", len(acked), len(msgs))
	if d := mustAppend(t, st, "INBOX", testMessage("after", 10)); len(msgs) > 0 && d.UID <= msgs[len(msgs)-1].UID {
		t.Fatalf("UID %d after crash not above %d", d.UID, msgs[len(msgs)-1].UID)
	}
}

const lockChildEnv = "POSTHORN_STORE_LOCK_CHILD"

// TestLockChild is the child of TestOpenLockedOtherProcess: it opens the
// store and prints the outcome.
func TestLockChild(t *testing.T) {
	path := os.Getenv(lockChildEnv)
	if path == "" {
		t.Skip("only run as the child of TestOpenLockedOtherProcess")
	}
	_, err := Open(path, Options{})
	fmt.Printf("locked=%v err=%v\n", errors.Is(err, ErrLocked), err)
}

// TestOpenLockedOtherProcess: while this process has the store open,
// another process's Open fails with ErrLocked within the lock timeout.
func TestOpenLockedOtherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess")
	}
	_, path := openTest(t, Options{NoSync: true})
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+path)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "locked=true") || !strings.Contains(string(out), path) {
		t.Fatalf("child's Open: %s", out)
	}
}
