package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// workerKind says which binary runs a worker process.
type workerKind int

const (
	// realWorker is `jetinfer worker`, the shipped binary.
	realWorker workerKind = iota
	// standInWorker is this runner re-executed with -stand-in-worker: the
	// same worker package and ONNX Runtime engine, wrapped by a stand-in
	// that injects engine failures or delays (see standin.go).
	standInWorker
)

// proc is one worker process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited and been reaped
	state   *os.ProcessState
	waitErr error
	mu      sync.Mutex
	hwmKiB  int64 // largest VmHWM read while it ran
}

// startWorker starts a worker process with the scenario's environment plus
// env, logging to <logs>/<name>.log, and waits until it serves requests.
func (r *runner) startWorker(kind workerKind, name string, env map[string]string) (*proc, error) {
	var cmd *exec.Cmd
	switch kind {
	case realWorker:
		cmd = exec.Command(r.jetinfer, "worker")
	case standInWorker:
		cmd = exec.Command(r.self, "-stand-in-worker")
	}
	cmd.Dir = r.root
	// Workers die with the runner, even if it crashes (Linux).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r.mu.Lock()
	r.nproc++
	n := r.nproc
	r.mu.Unlock()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}),
		logPath: filepath.Join(r.logs, fmt.Sprintf("%s-%s-%d.log", r.scenario, name, n))}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating worker log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting worker %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		logf.Close()
		close(p.done)
	}()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(p.logPath); bytes.Contains(b, []byte("worker started")) {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("worker %s exited before it started (%v): %s", name, p.waitErr, p.tail(8))
		default:
		}
		if time.Now().After(deadline) {
			p.signal(syscall.SIGKILL)
			<-p.done
			return nil, fmt.Errorf("worker %s did not start within 30s: %s", name, p.tail(8))
		}
		p.sampleRSS()
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(s syscall.Signal) {
	if p.running() {
		_ = p.cmd.Process.Signal(s)
	}
}

// kill SIGKILLs the process and reaps it.
func (p *proc) kill() {
	p.sampleRSS()
	p.signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and waits at most grace for the exit. It
// returns the exit code (-1 if killed after grace) and the time taken.
func (p *proc) terminate(grace time.Duration) (int, time.Duration) {
	p.sampleRSS()
	start := time.Now()
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.state.ExitCode(), time.Since(start)
	case <-t.C:
		p.kill()
		return -1, time.Since(start)
	}
}

// sampleRSS records the process's VmHWM (peak resident set) from /proc.
func (p *proc) sampleRSS() {
	if !p.running() {
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				p.mu.Lock()
				p.hwmKiB = max(p.hwmKiB, kib)
				p.mu.Unlock()
			}
		}
	}
}

// peakRSS is the largest VmHWM (peak resident set) sampled from /proc
// while the process ran, in bytes. The kernel's ru_maxrss is no use here:
// os/exec starts children with vfork semantics, so a child's ru_maxrss
// includes the runner's own resident set (the in-process servers' data)
// from before its exec.
func (p *proc) peakRSS() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hwmKiB << 10
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// countLog counts the log lines containing s.
func (p *proc) countLog(s string) int {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Count(b, []byte(s))
}

// sampler samples the VmHWM of every running worker process every 100 ms
// until stop is called.
func (r *runner) sampler() (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				for _, p := range r.procList() {
					p.sampleRSS()
				}
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// stopWorkers terminates every process still running (SIGTERM, then
// SIGKILL after 20s) and returns an error naming any that did not exit 0.
func (r *runner) stopWorkers() error {
	r.mu.Lock()
	sups := r.supervisors
	r.mu.Unlock()
	for _, s := range sups {
		s.stop()
	}
	var errs []error
	term := func() {
		for _, p := range r.procList() {
			if !p.running() {
				continue
			}
			if code, _ := p.terminate(20 * time.Second); code != 0 {
				errs = append(errs, fmt.Errorf("worker %s exited with %d after SIGTERM: %s", p.name, code, p.tail(5)))
			}
		}
	}
	term()
	for _, s := range sups {
		<-s.done
	}
	term() // any process a supervisor started meanwhile
	return errors.Join(errs...)
}

// maxRSS returns the largest peak RSS among the scenario's processes.
func (r *runner) maxRSS() int64 {
	var m int64
	for _, p := range r.procList() {
		m = max(m, p.peakRSS())
	}
	return m
}

// logSummary lists the scenario's processes and their log files.
func (r *runner) logSummary() string {
	var names []string
	for _, p := range r.procList() {
		names = append(names, p.logPath)
	}
	sort.Strings(names)
	return strings.Join(names, "\n")
}

// procList returns a snapshot of the scenario's processes.
func (r *runner) procList() []*proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.procs)
}

// supervisor restarts a worker process whenever it exits on its own, as
// Kubernetes does with restartPolicy Always.
type supervisor struct {
	r        *runner
	kind     workerKind
	name     string
	env      map[string]string
	mu       sync.Mutex
	cur      *proc
	stopping bool
	restarts int
	exits    []string // why each process exited
	done     chan struct{}
}

// supervise starts a supervised worker process.
func (r *runner) supervise(kind workerKind, name string, env map[string]string) (*supervisor, error) {
	p, err := r.startWorker(kind, name, env)
	if err != nil {
		return nil, err
	}
	s := &supervisor{r: r, kind: kind, name: name, env: env, cur: p, done: make(chan struct{})}
	r.mu.Lock()
	r.supervisors = append(r.supervisors, s)
	r.mu.Unlock()
	go s.loop()
	return s, nil
}

func (s *supervisor) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		p := s.cur
		s.mu.Unlock()
		<-p.done
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		s.restarts++
		s.exits = append(s.exits, fmt.Sprintf("exit %d: %s", p.state.ExitCode(), lastLogLine(p)))
		s.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		for {
			np, err := s.r.startWorker(s.kind, s.name, s.env)
			s.mu.Lock()
			if err == nil {
				s.cur = np
			}
			stop := s.stopping
			s.mu.Unlock()
			if stop {
				if err == nil {
					np.terminate(20 * time.Second)
				}
				return
			}
			if err == nil {
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// stop ends supervision; the process itself is stopped by stopWorkers.
func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}

func lastLogLine(p *proc) string {
	lines := strings.Split(p.tail(1), "\n")
	return truncate(lines[len(lines)-1], 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
