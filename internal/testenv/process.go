package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// component is a child process started by this package (not by envtest).
type component struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // exit status; valid after done is closed
}

// startComponent runs binary with args, stdout and stderr going to <logDir>/<name>.log.
//
// The child gets its own process group (so a terminal's Ctrl-C reaches only the test process,
// and Stop can signal the whole group) and is SIGKILLed by the kernel if this process dies.
// Pdeathsig is only the first line of defence; the watchdog covers the rest.
func startComponent(name, binary string, args []string, logDir string) (*component, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating log file for %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has terminated.
func (c *component) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// failure wraps err with the component's name, its exit status if it has exited, and the
// tail of its log, so a failed Start says what went wrong without digging for files.
func (c *component) failure(err error) error {
	if c.exited() {
		err = fmt.Errorf("%w (process exited: %v)", err, c.waitErr)
	}
	return fmt.Errorf("%s: %w\n%s", c.name, err, logTail(c.logPath))
}

// stop sends SIGTERM to the component's process group, then SIGKILL after grace, and waits.
func (c *component) stop(grace time.Duration) error {
	defer func() { _ = c.logFile.Close() }()
	if c.exited() {
		return nil
	}
	pgid := -c.cmd.Process.Pid // Setpgid: the group id is the child's pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", c.name, c.cmd.Process.Pid)
	}
}

// logTail returns the last lines of a log file, formatted for an error message.
func logTail(path string) string {
	const maxBytes = 4096
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log at %s: %v)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(fi.Size()-maxBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	s := string(b)
	if len(b) == maxBytes {
		// Drop the partial first line.
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return fmt.Sprintf("--- tail of %s ---\n%s", path, strings.TrimRight(s, "\n"))
}

// FreePort asks the kernel for a free loopback port. Every component gets an explicit one,
// so parallel suites never collide on the components' default ports (10257, 10259, ...).
// The port is released before use, so a tiny race remains; it has not mattered in practice.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHealthy polls https://127.0.0.1:<port>/healthz until it answers 200, the component
// exits, or ctx ends.
func waitHealthy(ctx context.Context, c *component, port int) error {
	return waitURL(ctx, c, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz")
}

// waitURL polls url until it answers 200, the component exits, or ctx ends.
func waitURL(ctx context.Context, c *component, url string) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		// The components serve with self-signed certificates generated in their cert-dir.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback health check
	}
	defer client.CloseIdleConnections()
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-c.done:
			return c.failure(fmt.Errorf("exited before becoming healthy at %s", url))
		case <-ctx.Done():
			return c.failure(fmt.Errorf("not healthy at %s (last answer: %s): %w", url, last, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watchdogScript runs in a separate `sh` whose stdin is a pipe held open only by this
// process. When the test process ends, however it ends (Stop, panic, SIGKILL, `go test`
// timeout), the kernel closes the pipe, `read` returns, and the script SIGKILLs every process
// whose command line mentions the env's directory. That covers envtest's etcd and
// kube-apiserver, which are started without a parent-death signal, and anything else pointed
// at the env's files (kubectl using its kubeconfig, ...). The directory reaches the script
// through the environment, so the script's own command line does not match.
//
// Matching on "<dir>/" rather than a pid list means no window between a process starting and
// its pid being recorded; every process started by Start has a path under Dir in its flags.
// Afterwards it removes the directory, which a killed test process could not do itself.
const watchdogScript = `read -r _ || :
killed=
for f in /proc/[0-9]*/cmdline; do
  pid=${f#/proc/}; pid=${pid%/cmdline}
  [ "$pid" = "$$" ] && continue
  case "$(tr '\0' ' ' < "$f" 2>/dev/null)" in
    *"$MESHPLANE_TESTENV_DIR/"*) kill -KILL "$pid" 2>/dev/null && killed=1 ;;
  esac
done
[ -n "$killed" ] && sleep 1
[ -n "$MESHPLANE_TESTENV_DIR" ] && rm -rf -- "$MESHPLANE_TESTENV_DIR"
exit 0
`

// watchdog is the running watchdog shell.
type watchdog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// startWatchdog starts the watchdog for everything mentioning dir.
func startWatchdog(dir string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.Env = append(os.Environ(), "MESHPLANE_TESTENV_DIR="+dir)
	// Own process group: a Ctrl-C aimed at `go test` must not kill the watchdog before it
	// has cleaned up. No Pdeathsig: it has to outlive us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("creating watchdog pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting watchdog: %w", err)
	}
	w := &watchdog{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// stop closes the watchdog's pipe, letting it sweep for leftovers, and waits for it to exit.
func (w *watchdog) stop() error {
	_ = w.stdin.Close()
	select {
	case <-w.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.done
		return errors.New("watchdog did not finish its sweep within 15s; killed it")
	}
}
