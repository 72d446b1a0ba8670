package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
)

// version overrides the module version reported by `jetinfer version` and
// jetinfer_build_info; release builds set it with
// -ldflags "-X main.version=v1.2.3" (deploy/Dockerfile.*).
var version string

// build identifies the running binary.
type build struct {
	Version   string // module version, or the -X main.version override
	Commit    string // vcs.revision, "+dirty" when built from a modified tree
	Time      string // vcs.time
	GoVersion string
}

// readBuild reads the binary's build information (runtime/debug).
func readBuild() build {
	b := build{Version: version, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Commit != "" {
		b.Commit += "+dirty"
	}
	return b
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// versionCmd implements `jetinfer version`: the binary's version, commit
// and Go version, the ONNX Runtime library it finds (and loads) and the
// TensorRT headers it was compiled against.
func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: jetinfer version\n\nPrint the version, commit and Go version of this binary, the ONNX Runtime\nlibrary it finds (JETINFER_ORT_LIBRARY or the search path) and the TensorRT\nversion it was built against.\n")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("version takes no arguments, got %q", fs.Args())
	}
	b := readBuild()
	fmt.Fprintf(stdout, "jetinfer     %s\n", or(b.Version, "unknown"))
	fmt.Fprintf(stdout, "commit       %s\n", or(b.Commit, "unknown (built without VCS information)"))
	if b.Time != "" {
		fmt.Fprintf(stdout, "commit time  %s\n", b.Time)
	}
	fmt.Fprintf(stdout, "go           %s %s/%s\n", b.GoVersion, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "onnxruntime  %s\n", onnxRuntimeVersion(os.Getenv(envPrefix+"ORT_LIBRARY")))
	fmt.Fprintf(stdout, "tensorrt     %s\n", tensorRTVersion())
	return nil
}

// onnxRuntimeVersion loads the ONNX Runtime library to ask its version.
func onnxRuntimeVersion(configured string) string {
	lib, err := onnxrt.FindLibrary(configured)
	if err != nil {
		return "library not found (run `make ort` or set JETINFER_ORT_LIBRARY)"
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		return fmt.Sprintf("%s does not load: %v", lib, err)
	}
	defer rt.Close()
	return fmt.Sprintf("%s (%s)", rt.Version(), lib)
}

// tensorRTVersion reports the TensorRT headers this binary was compiled
// against and the library it loaded.
func tensorRTVersion() string {
	if !tensorrt.Available {
		return "not built with -tags tensorrt"
	}
	s := "headers " + tensorrt.HeaderVersion()
	if v, err := tensorrt.LinkedVersion(); err == nil {
		s += ", library " + v
	}
	return s
}
