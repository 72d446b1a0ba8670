package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

// drainCmd implements `jetinfer drain`: it asks the worker listening on
// -addr to drain (POST /drain) and returns once the worker reports it has
// drained. Kubernetes runs it as the worker's preStop hook
// (deploy/helm), since an HTTP preStop hook can only GET.
func drainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := localAddr(os.Getenv(envPrefix + "HTTP_LISTEN"))
	fs := newFlagSet("drain", "[flags]", "Ask the local worker to drain (POST /drain on its HTTP port): it stops pulling,\n"+
		"finishes, publishes and acks what it holds, and exits. Returns once drained.", stderr)
	addr := fs.String("addr", def, "worker HTTP address (default from JETINFER_HTTP_LISTEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*addr+"/drain", nil)
	if err != nil {
		return fmt.Errorf("building drain request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the worker at %s to drain: %w", *addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("asking the worker at %s to drain: %s: %s", *addr, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(stdout, string(body))
	return nil
}

// localAddr turns a listen address (":9464", "0.0.0.0:9464") into one to
// dial on this host; empty means the worker's default, ":9464".
func localAddr(listen string) string {
	if listen == "" {
		listen = ":9464"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
