//go:build tensorrt && cgo

/*
 * shim.h: jetinfer's plain-C ABI over TensorRT 10.x/11.x.
 *
 * TensorRT has only a C++ API; this header is the whole surface the Go side
 * (or any C caller) sees. Rules:
 *   - Opaque handles; no C++ type appears here.
 *   - Every fallible function returns JT_OK (0) or a JT_ERR_* code and fills
 *     a caller-owned jt_status with what failed followed by the lines that
 *     TensorRT's logger emitted (errors and warnings) on the calling thread
 *     during this call. There is no "last error" kept between calls: a
 *     goroutine may run on another OS thread at its next cgo call.
 *   - Every extern "C" function catches all C++ exceptions.
 *   - Device addresses cross as uint64_t; host staging pointers must be
 *     pinned memory from trt/cuda (C memory, never Go memory).
 *   - On the per-batch path tensors are addressed by IO index, no strings.
 *   - No function keeps a pointer passed to it after it returns, except
 *     that an engine must outlive its contexts and a runtime its engines.
 *   - Element types, IO modes, precisions and compatibility levels are this
 *     header's own enums; the shim maps them onto whichever TensorRT major
 *     it was compiled against (TensorRT renumbered some enums in 11.0).
 */
#ifndef JETINFER_TRT_SHIM_H
#define JETINFER_TRT_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	JT_OK = 0,
	JT_ERR_INVALID = 1,     /* the request is wrong (shape outside profile, bad index, ...) */
	JT_ERR_TENSORRT = 2,    /* TensorRT refused or failed; see the logger lines */
	JT_ERR_CUDA = 3,        /* a CUDA runtime call failed; cuda_error holds the code */
	JT_ERR_UNSUPPORTED = 4, /* valid, but not supported by this shim or this TensorRT */
	JT_ERR_INTERNAL = 5,    /* a C++ exception or a broken invariant */
	JT_ERR_NO_MEMORY = 6,   /* host allocation failed */
	JT_ERR_CAPACITY = 7     /* a staging buffer is too small; bytes of every binding are filled in */
};

enum {
	JT_MESSAGE_SIZE = 4096,
	JT_MAX_DIMS = 8, /* nvinfer1::Dims::MAX_DIMS */
	JT_NAME_SIZE = 1024,
	JT_LOG_LINE_SIZE = 1024
};

typedef struct jt_status {
	int32_t code;
	int32_t cuda_error;
	int32_t device_lost; /* 1: a sticky CUDA error (jc_sticky): the GPU context is unusable for this process */
	int32_t log_queued;  /* lines waiting in the process-wide log queue (jt_log_drain) */
	char message[JT_MESSAGE_SIZE];
} jt_status;

/* Element types. JT_DTYPE_UNSUPPORTED covers FP8, INT4, FP4, E8M0 and any
 * type a later TensorRT adds. */
enum {
	JT_DTYPE_UNSUPPORTED = 0,
	JT_DTYPE_FLOAT32 = 1,
	JT_DTYPE_FLOAT16 = 2,
	JT_DTYPE_BFLOAT16 = 3,
	JT_DTYPE_INT8 = 4,
	JT_DTYPE_UINT8 = 5,
	JT_DTYPE_INT32 = 6,
	JT_DTYPE_INT64 = 7,
	JT_DTYPE_BOOL = 8
};

enum { JT_IO_NONE = 0, JT_IO_INPUT = 1, JT_IO_OUTPUT = 2 };

/* Logger severities, the same order as nvinfer1::ILogger::Severity. */
enum {
	JT_LOG_INTERNAL_ERROR = 0,
	JT_LOG_ERROR = 1,
	JT_LOG_WARNING = 2,
	JT_LOG_INFO = 3,
	JT_LOG_VERBOSE = 4
};

enum { JT_PROFILE_MIN = 0, JT_PROFILE_OPT = 1, JT_PROFILE_MAX = 2 };

/* ---- versions ---------------------------------------------------------- */

/* jt_linked_version returns getInferLibVersion() of the libnvinfer loaded
 * at run time: 10000*major + 100*minor + patch. */
int32_t jt_linked_version(void);

/* jt_linked_build returns getInferLibBuildVersion(): the build number of
 * the loaded libnvinfer. */
int32_t jt_linked_build(void);

/* jt_header_version returns NV_TENSORRT_VERSION of the headers the shim was
 * compiled against, same encoding; jt_header_build their NV_TENSORRT_BUILD. */
int32_t jt_header_version(void);
int32_t jt_header_build(void);

/* ---- logging ----------------------------------------------------------- */

/* One process-wide, thread-safe logger is given to TensorRT (TensorRT keeps
 * a single logger pointer). Lines with severity <= max_severity (default
 * JT_LOG_WARNING) are queued, at most 512 of them; older ones are dropped
 * and counted. */
void jt_log_set_level(int32_t max_severity);

typedef struct jt_log_line {
	int32_t severity;
	char message[JT_LOG_LINE_SIZE];
} jt_log_line;

/* jt_log_drain moves up to cap queued lines into out and returns how many;
 * *dropped receives the number of lines lost to overflow since the last
 * drain. */
int32_t jt_log_drain(jt_log_line *out, int32_t cap, int64_t *dropped);

/* ---- runtime and engine ------------------------------------------------ */

typedef struct jt_runtime jt_runtime;
typedef struct jt_engine jt_engine;
typedef struct jt_context jt_context;

/* jt_runtime_create makes an IRuntime on device. allow_host_code must be
 * set to run version-compatible plans (they embed the lean runtime and
 * any plugins serialized into them). The first runtime or build of the
 * process registers TensorRT's standard plugins (initLibNvInferPlugins). */
int32_t jt_runtime_create(int32_t device, int32_t allow_host_code, jt_runtime **out, jt_status *st);

/* jt_plugin_load registers the plugins of the library at path in
 * TensorRT's process-wide plugin registry, once per library per process
 * (the path is resolved first, so that two names of one file count once):
 * later calls for the same library succeed without loading it again.
 * Libraries are never deregistered: plugins stay registered for the life
 * of the process, as engines deserialized with them may still use them.
 * Call before deserializing or building anything that uses them. */
int32_t jt_plugin_load(int32_t device, const char *path, jt_status *st);

void jt_runtime_destroy(jt_runtime *rt);

/* jt_engine_deserialize turns a plan (bytes, not a path) into an engine.
 * The plan is not referenced after the call. */
int32_t jt_engine_deserialize(jt_runtime *rt, const void *plan, uint64_t size, jt_engine **out,
                              jt_status *st);

void jt_engine_destroy(jt_engine *e);

int32_t jt_engine_counts(const jt_engine *e, int32_t *nb_io, int32_t *nb_profiles, jt_status *st);

typedef struct jt_tensor_info {
	char name[JT_NAME_SIZE];
	int32_t mode;       /* JT_IO_* */
	int32_t dtype;      /* JT_DTYPE_* */
	int32_t trt_dtype;  /* nvinfer1::DataType value, for messages */
	int32_t elem_size;  /* bytes per element, 0 if unsupported */
	int32_t nb_dims;
	int64_t dims[JT_MAX_DIMS]; /* -1: dynamic */
	int32_t linear;     /* 1 if the format is kLINEAR, unvectorized, in every profile */
	int32_t trt_format; /* the first non-linear nvinfer1::TensorFormat seen, else 0 */
	int32_t shape_tensor; /* isShapeInferenceIO: a shape tensor */
	int32_t on_host;      /* getTensorLocation() == kHOST */
} jt_tensor_info;

/* jt_engine_tensor describes IO tensor index (0 <= index < nb_io). */
int32_t jt_engine_tensor(const jt_engine *e, int32_t index, jt_tensor_info *out, jt_status *st);

/* jt_engine_profile_shape reads the min, opt or max shape (which: JT_PROFILE_*)
 * of input index in profile. */
int32_t jt_engine_profile_shape(const jt_engine *e, int32_t index, int32_t profile, int32_t which,
                                int32_t *nb_dims, int64_t *dims, jt_status *st);

/* ---- execution contexts ------------------------------------------------ */

/* jt_context_create makes an IExecutionContext with its own non-blocking
 * CUDA stream and blocking-sync event. A context is used by one thread at
 * a time; several contexts of one engine run concurrently. */
int32_t jt_context_create(jt_engine *e, jt_context **out, jt_status *st);

/* jt_context_destroy waits for the context's stream, then frees it. */
int32_t jt_context_destroy(jt_context *c, jt_status *st);

/* jt_binding is one IO tensor of a batch. */
typedef struct jt_binding {
	int32_t index;        /* IO tensor index */
	int32_t nb_dims;      /* inputs: given; outputs: filled in */
	int64_t dims[JT_MAX_DIMS];
	uint64_t device;      /* device buffer (256-byte aligned) */
	uint64_t device_bytes; /* its capacity */
	void *host;           /* pinned host staging buffer */
	uint64_t host_bytes;  /* its capacity */
	uint64_t bytes;       /* inputs: must equal the shape's byte size; outputs: filled in */
} jt_binding;

/* jt_context_shapes selects profile, sets the input shapes and runs shape
 * inference, filling each output's nb_dims, dims and bytes. It copies and
 * enqueues nothing (used to size buffers for a profile's max shapes). An
 * output whose shape depends on data is refused with JT_ERR_UNSUPPORTED. */
int32_t jt_context_shapes(jt_context *c, int32_t profile, jt_binding *inputs, int32_t n_in,
                          jt_binding *outputs, int32_t n_out, jt_status *st);

/* jt_context_enqueue queues one batch with a single call: select profile
 * (setOptimizationProfileAsync, only when it changes), set input shapes,
 * infer output shapes (filled into outputs as in jt_context_shapes), bind
 * every tensor's device address, copy inputs host to device, enqueueV3,
 * copy outputs device to host, record the context's event. Every IO tensor
 * of the engine must be given exactly once. Returns once queued. */
int32_t jt_context_enqueue(jt_context *c, int32_t profile, jt_binding *inputs, int32_t n_in,
                           jt_binding *outputs, int32_t n_out, jt_status *st);

/* jt_context_wait blocks (sleeping, not spinning) until the last enqueued
 * batch has completed. */
int32_t jt_context_wait(jt_context *c, jt_status *st);

/* ---- offline build (builder.cpp) --------------------------------------- */

/* Precision flags of weakly typed networks: TensorRT 10.x only. */
enum { JT_PRECISION_FP16 = 1, JT_PRECISION_BF16 = 2, JT_PRECISION_INT8 = 4 };

enum {
	JT_HWCOMPAT_NONE = 0,
	JT_HWCOMPAT_AMPERE_PLUS = 1,
	JT_HWCOMPAT_SAME_COMPUTE_CAPABILITY = 2 /* TensorRT 10.9+ */
};

typedef struct jt_shape_range {
	const char *name; /* network input name */
	int32_t nb_dims;
	int64_t min[JT_MAX_DIMS];
	int64_t opt[JT_MAX_DIMS];
	int64_t max[JT_MAX_DIMS];
} jt_shape_range;

typedef struct jt_build_profile {
	const jt_shape_range *inputs;
	int32_t n_inputs;
} jt_build_profile;

/* jt_calibration feeds INT8 entropy calibration (TensorRT 10.x, weakly
 * typed networks). Every batch gives each input in input order; each input
 * has the same shape in every batch (shapes[i]), which also becomes the
 * calibration profile. */
typedef struct jt_calibration {
	int32_t n_inputs;
	const jt_shape_range *shapes; /* n_inputs; min = opt = max = the batch shape */
	const uint64_t *input_bytes;  /* n_inputs: bytes of one batch of each input */
	int32_t n_batches;
	const void *const *batches; /* n_batches * n_inputs host pointers, batch-major */
	const void *cache;          /* calibration cache to reuse, or NULL */
	uint64_t cache_size;
} jt_calibration;

typedef struct jt_build_options {
	int32_t device;
	int32_t strongly_typed;      /* 10.x: mark the network strongly typed; 11.x: always */
	int32_t precision;           /* JT_PRECISION_* bits; 10.x weakly typed only */
	uint64_t workspace_bytes;    /* 0: TensorRT's default (device memory size) */
	int32_t optimization_level;  /* 0..5, -1: TensorRT's default (3) */
	int32_t hardware_compat;     /* JT_HWCOMPAT_* */
	int32_t version_compatible;  /* plan runs on later TensorRT of the same major */
	int32_t exclude_lean_runtime;
	const void *timing_cache;    /* previous timing cache, or NULL */
	uint64_t timing_cache_size;
	const char *const *plugin_paths;
	int32_t n_plugins;
	const jt_build_profile *profiles;
	int32_t n_profiles;
	const jt_calibration *calibration; /* NULL unless INT8 entropy calibration */
	const char *onnx_path;       /* where the model came from, for external weights; may be NULL */
} jt_build_options;

/* jt_buffer is memory allocated by the shim; free it with jt_buffer_free. */
typedef struct jt_buffer {
	void *data;
	uint64_t size;
} jt_buffer;

typedef struct jt_build_result {
	jt_buffer plan;
	jt_buffer timing_cache;
	jt_buffer calibration_cache;
} jt_build_result;

/* jt_build parses an ONNX model and builds a serialized plan. On success
 * the caller owns the buffers in out. */
int32_t jt_build(const void *onnx, uint64_t onnx_size, const jt_build_options *opts,
                 jt_build_result *out, jt_status *st);

void jt_buffer_free(jt_buffer *b);

#ifdef __cplusplus
}
#endif

#endif /* JETINFER_TRT_SHIM_H */
