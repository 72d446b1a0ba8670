//go:build tensorrt && cgo

// shim_internal.hpp: what shim.cpp (runtime) and builder.cpp (offline
// build) share. C++ only; never included from Go.
#ifndef JETINFER_TRT_SHIM_INTERNAL_HPP
#define JETINFER_TRT_SHIM_INTERNAL_HPP

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "jcuda.h"
#include "shim.h"

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "jetinfer's TensorRT shim needs TensorRT 10.0 or newer"
#endif

namespace jetinfer_trt {

// logger returns the one process-wide ILogger given to TensorRT. It is
// created on first use and never destroyed, so TensorRT objects torn down
// at process exit can still log.
nvinfer1::ILogger &logger();

// queued returns how many lines wait in the log queue.
int32_t queued();

// Capture collects, for the duration of one extern "C" call, the error and
// warning lines TensorRT logs on the calling thread, so that a failure's
// status can carry them. It is installed and removed within the call; no
// state survives the call (this is not a "last error").
class Capture {
public:
	Capture() noexcept;
	~Capture();
	Capture(Capture const &) = delete;
	Capture &operator=(Capture const &) = delete;

	std::vector<std::string> lines;

private:
	Capture *prev_;
};

// fail fills st with code, what and the captured logger lines. It does not
// allocate and never throws.
int32_t fail(jt_status *st, Capture const &cap, int32_t code, char const *what) noexcept;

inline int32_t fail(jt_status *st, Capture const &cap, int32_t code, std::string const &what) noexcept
{
	return fail(st, cap, code, what.c_str());
}

// fail_cuda converts a jc_status of the staging layer.
inline int32_t fail_cuda(jt_status *st, Capture const &cap, jc_status const &cs) noexcept
{
	int32_t rc = fail(st, cap, cs.code == JC_ERR_CUDA ? JT_ERR_CUDA : JT_ERR_INTERNAL, cs.message);
	st->cuda_error = cs.cuda_error;
	st->device_lost = cs.sticky;
	return rc;
}

// init_standard_plugins registers TensorRT's standard plugins
// (libnvinfer_plugin: the ones the ONNX parser maps ops such as RoiAlign,
// EfficientNMS or InstanceNormalization onto) once per process.
int32_t init_standard_plugins(jt_status *st, Capture const &cap);

// load_plugin_library registers a plugin library once per process (see
// jt_plugin_load).
int32_t load_plugin_library(char const *path, jt_status *st, Capture const &cap);

inline void clear(jt_status *st) noexcept
{
	st->code = JT_OK;
	st->cuda_error = 0;
	st->device_lost = 0;
	st->log_queued = 0;
	st->message[0] = '\0';
}

// guard runs body(cap) with a fresh Capture and turns every C++ exception
// into a status. Every extern "C" function of the shim goes through it.
template <typename F>
int32_t guard(jt_status *st, F &&body) noexcept
{
	Capture cap;
	clear(st);
	int32_t rc;
	try {
		rc = body(cap);
	} catch (std::bad_alloc const &) {
		rc = fail(st, cap, JT_ERR_NO_MEMORY, "allocating host memory in the TensorRT shim: out of memory");
	} catch (std::exception const &e) {
		char buf[512];
		std::snprintf(buf, sizeof buf, "C++ exception in the TensorRT shim: %s", e.what());
		rc = fail(st, cap, JT_ERR_INTERNAL, buf);
	} catch (...) {
		rc = fail(st, cap, JT_ERR_INTERNAL, "unknown C++ exception in the TensorRT shim");
	}
	st->log_queued = queued();
	return rc;
}

// set_device selects device on the calling thread.
inline int32_t set_device(jt_status *st, Capture const &cap, int32_t device) noexcept
{
	cudaError_t err = cudaSetDevice(device);
	if (err != cudaSuccess) {
		jc_status cs;
		jc_cuda_fail(&cs, "cudaSetDevice", err);
		return fail_cuda(st, cap, cs);
	}
	return JT_OK;
}

// dims_string formats d as "[1,3,-1]".
inline std::string dims_string(int32_t nb, int64_t const *d)
{
	std::string s = "[";
	for (int32_t i = 0; i < nb; i++) {
		if (i > 0)
			s += ',';
		s += std::to_string(d[i]);
	}
	return s + "]";
}

inline std::string dims_string(nvinfer1::Dims const &d)
{
	if (d.nbDims < 0)
		return "(invalid)";
	return dims_string(d.nbDims, d.d);
}

// to_dims converts a jt shape; false if nb is out of range.
inline bool to_dims(int32_t nb, int64_t const *src, nvinfer1::Dims &out) noexcept
{
	if (nb < 0 || nb > nvinfer1::Dims::MAX_DIMS || nb > JT_MAX_DIMS)
		return false;
	out.nbDims = nb;
	for (int32_t i = 0; i < nb; i++)
		out.d[i] = src[i];
	return true;
}

} // namespace jetinfer_trt

#endif // JETINFER_TRT_SHIM_INTERNAL_HPP
