package crash

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/server"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// posthornBinary builds cmd/posthorn once per test process.
func posthornBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "posthorn-crash-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "posthorn")
		out, err := exec.Command("go", "build", "-o", buildPath, "github.com/posthorn/posthorn/cmd/posthorn").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// proc is a `posthorn serve` process that can be killed and restarted.
type proc struct {
	t       *testing.T
	bin     string
	cfgPath string
	dataDir string
	log     *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	addrs    map[string]string
	starts   int
	kills    int
	stopping bool
}

// writeConfig writes a configuration with every listener on 127.0.0.1:0.
func writeConfig(t *testing.T, dir, dnsAddr string, mxPort int) string {
	t.Helper()
	cfg := fmt.Sprintf(`hostname = "mail.example.test"
data_dir = "data"
log_level = "warn"

[listen]
smtp = "127.0.0.1:0"
submission = "127.0.0.1:0"
submissions = ""
imap = "127.0.0.1:0"
imaps = ""
pop3 = ""
pop3s = ""
http = ""
metrics = ""

[outbound]
mx_port = %d
dns_server = %q
retry_initial = "1s"
retry_max = "2s"

[limits]
max_connections_per_ip = 1000
`, mxPort, dnsAddr)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newProc(t *testing.T, cfgPath string) *proc {
	t.Helper()
	dir := filepath.Dir(cfgPath)
	log, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, bin: posthornBinary(t), cfgPath: cfgPath, dataDir: filepath.Join(dir, "data"), log: log}
	t.Cleanup(func() {
		p.kill()
		log.Close()
	})
	return p
}

// cli runs an administration command (the server must not be running).
func (p *proc) cli(stdin string, args ...string) {
	p.t.Helper()
	cmd := exec.Command(p.bin, append([]string{"--config", p.cfgPath}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("posthorn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// start starts serve and waits until every listener is bound.
func (p *proc) start() {
	p.t.Helper()
	addrsFile := filepath.Join(p.dataDir, server.AddrsFile)
	os.Remove(addrsFile) // a killed process leaves its file behind
	cmd := exec.Command(p.bin, "serve", "--config", p.cfgPath)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(addrsFile)
		var addrs map[string]string
		if err == nil && json.Unmarshal(b, &addrs) == nil {
			p.mu.Lock()
			p.cmd, p.exited, p.addrs = cmd, exited, addrs
			p.starts++
			p.mu.Unlock()
			return
		}
		select {
		case <-exited:
			p.t.Fatalf("posthorn serve exited during start-up: %v\n%s", cmd.ProcessState, p.logTail())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			p.t.Fatalf("posthorn serve did not bind its listeners in 30 s\n%s", p.logTail())
		}
	}
}

// addr is the current address of a listener ("" while restarting).
func (p *proc) addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return ""
	}
	return p.addrs[name]
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() bool {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	p.mu.Lock()
	p.kills++
	p.mu.Unlock()
	return true
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if !cmd.ProcessState.Success() {
			p.t.Errorf("posthorn serve exited with %v after SIGTERM\n%s", cmd.ProcessState, p.logTail())
		}
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-exited
		p.t.Errorf("posthorn serve did not stop within 40 s of SIGTERM")
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
