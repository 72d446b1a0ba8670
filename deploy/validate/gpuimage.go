package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// runtimePackages names, for each library the TensorRT build links
// (`-l` in the cgo LDFLAGS), the Debian package of NVIDIA's CUDA apt
// repository that ships it; "" where the runtime base image (CUDA runtime,
// libstdc++) already has it.
var runtimePackages = map[string]string{
	"nvinfer":        "libnvinfer10",
	"nvinfer_plugin": "libnvinfer-plugin10",
	"nvonnxparser":   "libnvonnxparsers10",
	"cudart":         "",
	"stdc++":         "",
}

var linkFlag = regexp.MustCompile(`(?:^|\s)-l(\S+)`)

// checkGPUImage checks that the runtime stage of the GPU Dockerfile (its
// last FROM) installs, pinned to TRT_VERSION and held, a package for every
// library that cgoFile's LDFLAGS link: a binary built with -tags tensorrt
// does not start where one is missing. It returns the packages checked.
func checkGPUImage(cgoFile, dockerfile string) ([]string, error) {
	libs, err := linkedLibraries(cgoFile)
	if err != nil {
		return nil, err
	}
	df, err := os.ReadFile(dockerfile)
	if err != nil {
		return nil, err
	}
	stages := strings.Split(string(df), "\nFROM ")
	runtime := stages[len(stages)-1]
	var pkgs []string
	for _, lib := range libs {
		pkg, known := runtimePackages[lib]
		if !known {
			return nil, fmt.Errorf("%s links -l%s, which no runtime package is known for (add it to runtimePackages)", cgoFile, lib)
		}
		if pkg == "" {
			continue
		}
		if !strings.Contains(runtime, `"`+pkg+`=${TRT_VERSION}"`) {
			return nil, fmt.Errorf("%s: the runtime stage does not install %s=${TRT_VERSION}, which the binary needs for -l%s", dockerfile, pkg, lib)
		}
		if !regexp.MustCompile(`apt-mark hold[^\n]*\b` + regexp.QuoteMeta(pkg) + `\b`).MatchString(runtime) {
			return nil, fmt.Errorf("%s: the runtime stage does not hold %s at TRT_VERSION (apt-mark hold)", dockerfile, pkg)
		}
		pkgs = append(pkgs, pkg)
	}
	return pkgs, nil
}

// linkedLibraries returns the libraries named by -l in path's
// `#cgo LDFLAGS` lines.
func linkedLibraries(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var libs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#cgo ") || !strings.Contains(line, "LDFLAGS:") {
			continue
		}
		for _, m := range linkFlag.FindAllStringSubmatch(line[strings.Index(line, "LDFLAGS:"):], -1) {
			libs = append(libs, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("%s: no -l flags in its #cgo LDFLAGS", path)
	}
	return libs, nil
}
