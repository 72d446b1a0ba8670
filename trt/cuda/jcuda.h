//go:build (cuda || tensorrt) && cgo

/*
 * jcuda.h: jetinfer's CUDA staging layer, header-only.
 *
 * Every function is static inline, so each translation unit that includes
 * this header (trt/cuda's cgo files, trt/tensorrt's C++ shim) gets private
 * copies and no symbol is exported twice when both packages are linked into
 * one binary. The code is plain C99 and also compiles as C++.
 *
 * Conventions:
 *   - Every fallible function returns JC_OK (0) or a JC_ERR_* code and fills
 *     the caller-owned jc_status; there is no thread-local "last error".
 *   - Every entry point that touches the device first calls cudaSetDevice:
 *     the CUDA current device is per OS thread and a goroutine may move
 *     between threads between two cgo calls. The runtime API always uses
 *     the device's primary context, the one TensorRT uses too.
 *   - Device addresses, streams and events cross the ABI as uint64_t.
 *   - No function keeps a pointer passed to it after it returns.
 */
#ifndef JETINFER_JCUDA_H
#define JETINFER_JCUDA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	JC_OK = 0,
	JC_ERR_CUDA = 1,        /* a CUDA runtime call failed; cuda_error holds the code */
	JC_ERR_INVALID = 2,     /* bad argument from the caller */
	JC_ERR_UNSUPPORTED = 3, /* this build or this device cannot do it */
	JC_ERR_WORK = 4         /* the work callback of jc_batch failed */
};

enum { JC_MESSAGE_SIZE = 1024 };

/* jc_status is owned by the caller and filled on failure. */
typedef struct jc_status {
	int32_t code;
	int32_t cuda_error;
	int32_t sticky; /* 1: cuda_error left the CUDA context unusable (jc_sticky) */
	char message[JC_MESSAGE_SIZE];
} jc_status;

/* jc_copy is one contiguous copy between host and device memory. host must
 * be pinned (cudaHostAlloc) for the copy to be asynchronous. */
typedef struct jc_copy {
	uint64_t device;
	void *host;
	uint64_t bytes;
} jc_copy;

/* jc_work_fn runs between the host-to-device and device-to-host copies of
 * jc_batch, on the batch's stream (a kernel launch, a TensorRT enqueue). It
 * returns JC_OK or fills st and returns an error code. */
typedef int32_t (*jc_work_fn)(void *arg, cudaStream_t stream, jc_status *st);

static inline void jc_status_clear(jc_status *st)
{
	if (st) {
		st->code = JC_OK;
		st->cuda_error = 0;
		st->sticky = 0;
		st->message[0] = '\0';
	}
}

/* jc_sticky reports whether err is a sticky error: one that leaves the
 * process's CUDA context unusable, so that every later CUDA call fails too
 * and only a new process recovers (the runtime API's words: "the process
 * must be terminated and relaunched"). Numeric values, stable since CUDA
 * 10.1, so that the list compiles against every CUDA header set. An
 * uncorrectable ECC or NVLink error is counted too: the GPU needs a reset. */
static inline int32_t jc_sticky(cudaError_t err)
{
	switch ((int)err) {
	case 214: /* cudaErrorECCUncorrectable */
	case 220: /* cudaErrorNvlinkUncorrectable */
	case 700: /* cudaErrorIllegalAddress */
	case 702: /* cudaErrorLaunchTimeout */
	case 710: /* cudaErrorAssert */
	case 714: /* cudaErrorHardwareStackError */
	case 715: /* cudaErrorIllegalInstruction */
	case 716: /* cudaErrorMisalignedAddress */
	case 717: /* cudaErrorInvalidAddressSpace */
	case 718: /* cudaErrorInvalidPc */
	case 719: /* cudaErrorLaunchFailure */
	case 911: /* cudaErrorExternalDevice */
		return 1;
	default:
		return 0;
	}
}

static inline int32_t jc_fail(jc_status *st, int32_t code, const char *what)
{
	if (st) {
		st->code = code;
		st->cuda_error = 0;
		st->sticky = 0;
		snprintf(st->message, sizeof st->message, "%s", what);
	}
	return code;
}

static inline int32_t jc_cuda_fail(jc_status *st, const char *op, cudaError_t err)
{
	if (st) {
		st->code = JC_ERR_CUDA;
		st->cuda_error = (int32_t)err;
		st->sticky = jc_sticky(err);
		snprintf(st->message, sizeof st->message, "%s: %s (%s)", op,
		         cudaGetErrorString(err), cudaGetErrorName(err));
	}
	return JC_ERR_CUDA;
}

#define JC_CHECK(st, op, call)                                                   \
	do {                                                                     \
		cudaError_t jc_err_ = (call);                                    \
		if (jc_err_ != cudaSuccess)                                      \
			return jc_cuda_fail((st), (op), jc_err_);                \
	} while (0)

static inline cudaStream_t jc_stream_of(uint64_t s) { return (cudaStream_t)(uintptr_t)s; }
static inline cudaEvent_t jc_event_of(uint64_t e) { return (cudaEvent_t)(uintptr_t)e; }
static inline void *jc_dev_ptr(uint64_t d) { return (void *)(uintptr_t)d; }

/* jc_runtime_version reports the CUDA runtime linked in and the version the
 * driver supports, both as 1000*major + 10*minor. */
static inline int32_t jc_runtime_version(int32_t *runtime, int32_t *driver, jc_status *st)
{
	int r = 0, d = 0;
	jc_status_clear(st);
	JC_CHECK(st, "cudaRuntimeGetVersion", cudaRuntimeGetVersion(&r));
	JC_CHECK(st, "cudaDriverGetVersion", cudaDriverGetVersion(&d));
	*runtime = r;
	*driver = d;
	return JC_OK;
}

static inline int32_t jc_device_count(int32_t *n, jc_status *st)
{
	int c = 0;
	jc_status_clear(st);
	JC_CHECK(st, "cudaGetDeviceCount", cudaGetDeviceCount(&c));
	*n = c;
	return JC_OK;
}

/* jc_device_info describes one device for manifests and logs. */
typedef struct jc_device_info {
	char name[256];
	int32_t major, minor;
	int32_t multiprocessors;
	uint64_t total_memory;
	int32_t async_engines;   /* copy engines: 2 means H2D and D2H overlap */
	int32_t pci_bus;
	unsigned char uuid[16];  /* cudaDeviceProp.uuid */
} jc_device_info;

/* jc_device_open selects device and initializes its primary context. */
static inline int32_t jc_device_open(int32_t device, jc_device_info *info, jc_status *st)
{
	struct cudaDeviceProp p;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaFree(0) initializing the primary context", cudaFree(0));
	JC_CHECK(st, "cudaGetDeviceProperties", cudaGetDeviceProperties(&p, device));
	snprintf(info->name, sizeof info->name, "%s", p.name);
	info->major = p.major;
	info->minor = p.minor;
	info->multiprocessors = p.multiProcessorCount;
	info->total_memory = (uint64_t)p.totalGlobalMem;
	info->async_engines = p.asyncEngineCount;
	info->pci_bus = p.pciBusID;
	memcpy(info->uuid, p.uuid.bytes, sizeof info->uuid);
	return JC_OK;
}

/* jc_host_alloc allocates page-locked host memory usable by every device
 * (cudaHostAllocPortable). */
static inline int32_t jc_host_alloc(int32_t device, uint64_t bytes, void **out, jc_status *st)
{
	void *p = NULL;
	jc_status_clear(st);
	if (bytes == 0)
		return jc_fail(st, JC_ERR_INVALID, "pinned allocation of 0 bytes");
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaHostAlloc", cudaHostAlloc(&p, (size_t)bytes, cudaHostAllocPortable));
	*out = p;
	return JC_OK;
}

static inline int32_t jc_host_free(int32_t device, void *p, jc_status *st)
{
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaFreeHost", cudaFreeHost(p));
	return JC_OK;
}

static inline int32_t jc_dev_alloc(int32_t device, uint64_t bytes, uint64_t *out, jc_status *st)
{
	void *p = NULL;
	jc_status_clear(st);
	if (bytes == 0)
		return jc_fail(st, JC_ERR_INVALID, "device allocation of 0 bytes");
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaMalloc", cudaMalloc(&p, (size_t)bytes));
	*out = (uint64_t)(uintptr_t)p;
	return JC_OK;
}

static inline int32_t jc_dev_free(int32_t device, uint64_t p, jc_status *st)
{
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaFree", cudaFree(jc_dev_ptr(p)));
	return JC_OK;
}

/* jc_stream_create makes a non-blocking stream (no implicit sync with the
 * legacy default stream) and a blocking-sync event for it: a thread waiting
 * on the event sleeps instead of spinning a core. */
static inline int32_t jc_stream_create(int32_t device, uint64_t *stream, uint64_t *event, jc_status *st)
{
	cudaStream_t s = NULL;
	cudaEvent_t e = NULL;
	cudaError_t err;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	err = cudaEventCreateWithFlags(&e, cudaEventBlockingSync | cudaEventDisableTiming);
	if (err != cudaSuccess) {
		cudaStreamDestroy(s);
		return jc_cuda_fail(st, "cudaEventCreateWithFlags(cudaEventBlockingSync)", err);
	}
	*stream = (uint64_t)(uintptr_t)s;
	*event = (uint64_t)(uintptr_t)e;
	return JC_OK;
}

static inline int32_t jc_stream_destroy(int32_t device, uint64_t stream, uint64_t event, jc_status *st)
{
	cudaError_t e1, e2, e3;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	e1 = cudaStreamSynchronize(jc_stream_of(stream));
	e2 = cudaEventDestroy(jc_event_of(event));
	e3 = cudaStreamDestroy(jc_stream_of(stream));
	if (e1 != cudaSuccess)
		return jc_cuda_fail(st, "cudaStreamSynchronize", e1);
	if (e2 != cudaSuccess)
		return jc_cuda_fail(st, "cudaEventDestroy", e2);
	if (e3 != cudaSuccess)
		return jc_cuda_fail(st, "cudaStreamDestroy", e3);
	return JC_OK;
}

/* jc_event_wait blocks the calling thread until the event completes. With
 * cudaEventBlockingSync the thread sleeps. */
static inline int32_t jc_event_wait(int32_t device, uint64_t event, jc_status *st)
{
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaEventSynchronize", cudaEventSynchronize(jc_event_of(event)));
	return JC_OK;
}

/* jc_stream_probe looks for a sticky error behind stream after a failure
 * that carried no CUDA error code (TensorRT's enqueueV3 returning false):
 * it returns JC_OK while the stream is healthy (idle or busy), else the
 * CUDA error, with st->sticky telling whether the context is lost. */
static inline int32_t jc_stream_probe(int32_t device, uint64_t stream, jc_status *st)
{
	cudaError_t err;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	err = cudaStreamQuery(jc_stream_of(stream));
	if (err == cudaSuccess || err == cudaErrorNotReady)
		return JC_OK;
	return jc_cuda_fail(st, "cudaStreamQuery after a failed enqueue", err);
}

/* jc_event_query returns JC_OK with *done set, without blocking. */
static inline int32_t jc_event_query(int32_t device, uint64_t event, int32_t *done, jc_status *st)
{
	cudaError_t err;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	err = cudaEventQuery(jc_event_of(event));
	if (err == cudaSuccess) {
		*done = 1;
		return JC_OK;
	}
	if (err == cudaErrorNotReady) {
		*done = 0;
		return JC_OK;
	}
	return jc_cuda_fail(st, "cudaEventQuery", err);
}

/* jc_batch queues one batch on a stream with a single call: every
 * host-to-device copy, then work (may be NULL), then every device-to-host
 * copy, then records event. It returns once everything is queued; wait on
 * the event with jc_event_wait. */
static inline int32_t jc_batch(int32_t device, uint64_t stream, const jc_copy *h2d, int32_t nh2d,
                               jc_work_fn work, void *work_arg, const jc_copy *d2h, int32_t nd2h,
                               uint64_t event, jc_status *st)
{
	cudaStream_t s = jc_stream_of(stream);
	int32_t i, rc;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	for (i = 0; i < nh2d; i++) {
		if (h2d[i].bytes == 0)
			continue;
		JC_CHECK(st, "cudaMemcpyAsync host to device",
		         cudaMemcpyAsync(jc_dev_ptr(h2d[i].device), h2d[i].host, (size_t)h2d[i].bytes,
		                         cudaMemcpyHostToDevice, s));
	}
	if (work) {
		rc = work(work_arg, s, st);
		if (rc != JC_OK)
			return rc;
	}
	for (i = 0; i < nd2h; i++) {
		if (d2h[i].bytes == 0)
			continue;
		JC_CHECK(st, "cudaMemcpyAsync device to host",
		         cudaMemcpyAsync(d2h[i].host, jc_dev_ptr(d2h[i].device), (size_t)d2h[i].bytes,
		                         cudaMemcpyDeviceToHost, s));
	}
	JC_CHECK(st, "cudaEventRecord", cudaEventRecord(jc_event_of(event), s));
	return JC_OK;
}

/* jc_time_copies measures reps back-to-back copies of bytes in one direction
 * (to_device != 0: host to device) on stream with timing events, and returns
 * the elapsed device time in milliseconds. It is the reference for "the
 * card's copy peak": no host round trip between the copies. */
static inline int32_t jc_time_copies(int32_t device, uint64_t stream, void *host, uint64_t dev,
                                     uint64_t bytes, int32_t to_device, int32_t reps, float *ms,
                                     jc_status *st)
{
	cudaStream_t s = jc_stream_of(stream);
	cudaEvent_t a = NULL, b = NULL;
	cudaError_t err = cudaSuccess;
	const char *op = "";
	int32_t i;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaEventCreate", cudaEventCreate(&a));
	err = cudaEventCreate(&b);
	if (err != cudaSuccess) {
		cudaEventDestroy(a);
		return jc_cuda_fail(st, "cudaEventCreate", err);
	}
	op = "cudaEventRecord";
	err = cudaEventRecord(a, s);
	for (i = 0; i < reps && err == cudaSuccess; i++) {
		op = "cudaMemcpyAsync";
		if (to_device)
			err = cudaMemcpyAsync(jc_dev_ptr(dev), host, (size_t)bytes, cudaMemcpyHostToDevice, s);
		else
			err = cudaMemcpyAsync(host, jc_dev_ptr(dev), (size_t)bytes, cudaMemcpyDeviceToHost, s);
	}
	if (err == cudaSuccess) {
		op = "cudaEventRecord";
		err = cudaEventRecord(b, s);
	}
	if (err == cudaSuccess) {
		op = "cudaEventSynchronize";
		err = cudaEventSynchronize(b);
	}
	if (err == cudaSuccess) {
		op = "cudaEventElapsedTime";
		err = cudaEventElapsedTime(ms, a, b);
	}
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	if (err != cudaSuccess)
		return jc_cuda_fail(st, op, err);
	return JC_OK;
}

/*
 * The timing kernel: every thread spins for a given number of SM clock
 * cycles, then the grid adds 1 to each 32-bit word of a buffer (so a test
 * can check that the kernel ran between the copies). It is hand-written PTX,
 * loaded with the runtime's library API (CUDA 12.0+), JIT-compiled by the
 * driver for whatever GPU is present; no nvcc is needed to build jetinfer.
 */
static const char jc_spin_ptx[] =
	".version 7.0\n"
	".target sm_75\n"
	".address_size 64\n"
	"\n"
	".visible .entry jc_spin_add(\n"
	"\t.param .u64 p_data,\n"
	"\t.param .u64 p_words,\n"
	"\t.param .u64 p_cycles\n"
	")\n"
	"{\n"
	"\t.reg .pred %p<3>;\n"
	"\t.reg .b32 %r<8>;\n"
	"\t.reg .b64 %rd<12>;\n"
	"\n"
	"\tld.param.u64 %rd1, [p_data];\n"
	"\tld.param.u64 %rd2, [p_words];\n"
	"\tld.param.u64 %rd3, [p_cycles];\n"
	"\tcvta.to.global.u64 %rd1, %rd1;\n"
	"\tmov.u64 %rd4, %clock64;\n"
	"SPIN:\n"
	"\tmov.u64 %rd5, %clock64;\n"
	"\tsub.u64 %rd6, %rd5, %rd4;\n"
	"\tsetp.lt.u64 %p1, %rd6, %rd3;\n"
	"\t@%p1 bra SPIN;\n"
	"\tmov.u32 %r1, %ctaid.x;\n"
	"\tmov.u32 %r2, %ntid.x;\n"
	"\tmov.u32 %r3, %tid.x;\n"
	"\tmad.lo.u32 %r4, %r1, %r2, %r3;\n"
	"\tcvt.u64.u32 %rd7, %r4;\n"
	"\tmov.u32 %r5, %nctaid.x;\n"
	"\tmul.lo.u32 %r6, %r5, %r2;\n"
	"\tcvt.u64.u32 %rd8, %r6;\n"
	"LOOP:\n"
	"\tsetp.ge.u64 %p2, %rd7, %rd2;\n"
	"\t@%p2 bra DONE;\n"
	"\tshl.b64 %rd9, %rd7, 2;\n"
	"\tadd.u64 %rd10, %rd1, %rd9;\n"
	"\tld.global.u32 %r7, [%rd10];\n"
	"\tadd.u32 %r7, %r7, 1;\n"
	"\tst.global.u32 [%rd10], %r7;\n"
	"\tadd.u64 %rd7, %rd7, %rd8;\n"
	"\tbra LOOP;\n"
	"DONE:\n"
	"\tret;\n"
	"}\n";

/* jc_spin_args is the work_arg of jc_spin_work. */
typedef struct jc_spin_args {
	uint64_t kernel; /* from jc_spin_load */
	uint64_t data;   /* device address of words 32-bit words */
	uint64_t words;
	uint64_t cycles;
	uint32_t blocks;
	uint32_t threads;
} jc_spin_args;

#if defined(CUDART_VERSION) && CUDART_VERSION >= 12000
#define JC_HAVE_LIBRARY_API 1
#else
#define JC_HAVE_LIBRARY_API 0
#endif

/* jc_spin_load loads the timing kernel; *library and *kernel are handles
 * for jc_spin_unload and jc_spin_args.kernel. */
static inline int32_t jc_spin_load(int32_t device, uint64_t *library, uint64_t *kernel, jc_status *st)
{
#if JC_HAVE_LIBRARY_API
	cudaLibrary_t lib = NULL;
	cudaKernel_t k = NULL;
	cudaError_t err;
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaLibraryLoadData(timing kernel PTX)",
	         cudaLibraryLoadData(&lib, jc_spin_ptx, NULL, NULL, 0, NULL, NULL, 0));
	err = cudaLibraryGetKernel(&k, lib, "jc_spin_add");
	if (err != cudaSuccess) {
		cudaLibraryUnload(lib);
		return jc_cuda_fail(st, "cudaLibraryGetKernel(jc_spin_add)", err);
	}
	*library = (uint64_t)(uintptr_t)lib;
	*kernel = (uint64_t)(uintptr_t)k;
	return JC_OK;
#else
	(void)device;
	(void)library;
	(void)kernel;
	return jc_fail(st, JC_ERR_UNSUPPORTED,
	               "the timing kernel needs CUDA runtime 12.0 or newer (cudaLibraryLoadData)");
#endif
}

static inline int32_t jc_spin_unload(int32_t device, uint64_t library, jc_status *st)
{
#if JC_HAVE_LIBRARY_API
	jc_status_clear(st);
	JC_CHECK(st, "cudaSetDevice", cudaSetDevice(device));
	JC_CHECK(st, "cudaLibraryUnload", cudaLibraryUnload((cudaLibrary_t)(uintptr_t)library));
	return JC_OK;
#else
	(void)device;
	(void)library;
	return jc_fail(st, JC_ERR_UNSUPPORTED, "the timing kernel needs CUDA runtime 12.0 or newer");
#endif
}

/* jc_spin_work is a jc_work_fn that launches the timing kernel. */
static inline int32_t jc_spin_work(void *arg, cudaStream_t stream, jc_status *st)
{
#if JC_HAVE_LIBRARY_API
	jc_spin_args *a = (jc_spin_args *)arg;
	uint64_t data = a->data, words = a->words, cycles = a->cycles;
	void *params[3];
	dim3 grid, block;
	params[0] = &data;
	params[1] = &words;
	params[2] = &cycles;
	grid.x = a->blocks ? a->blocks : 1;
	grid.y = 1;
	grid.z = 1;
	block.x = a->threads ? a->threads : 256;
	block.y = 1;
	block.z = 1;
	JC_CHECK(st, "cudaLaunchKernel(jc_spin_add)",
	         cudaLaunchKernel((const void *)(uintptr_t)a->kernel, grid, block, params, 0, stream));
	return JC_OK;
#else
	(void)arg;
	(void)stream;
	return jc_fail(st, JC_ERR_UNSUPPORTED, "the timing kernel needs CUDA runtime 12.0 or newer");
#endif
}

/* jc_batch_spin is jc_batch with the timing kernel as its work. */
static inline int32_t jc_batch_spin(int32_t device, uint64_t stream, const jc_copy *h2d, int32_t nh2d,
                                    jc_spin_args *spin, const jc_copy *d2h, int32_t nd2h,
                                    uint64_t event, jc_status *st)
{
	return jc_batch(device, stream, h2d, nh2d, jc_spin_work, spin, d2h, nd2h, event, st);
}

#ifdef __cplusplus
}
#endif

#endif /* JETINFER_JCUDA_H */
