//go:build tensorrt && cgo

// shim.cpp: the runtime half of jetinfer's TensorRT shim (see shim.h):
// logger, plan deserialization, IO and profile introspection, execution
// contexts with their own streams, and the one-call-per-batch enqueue
// built on trt/cuda's staging code (jcuda.h).
//
// Written against the TensorRT 10.0+ and 11.x C++ API (NvInferRuntime.h);
// only calls that exist unchanged in both majors are used here.

#include "shim_internal.hpp"

#include <NvInferPlugin.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>

using namespace nvinfer1;

namespace jetinfer_trt {
namespace {

thread_local Capture *tl_capture = nullptr;

constexpr size_t kQueueCap = 512;

struct Line {
	int32_t severity;
	std::string text;
};

class Logger final : public ILogger {
public:
	void log(Severity severity, AsciiChar const *msg) noexcept override
	{
		try {
			int32_t sev = static_cast<int32_t>(severity);
			char const *text = msg ? msg : "";
			if (tl_capture != nullptr && sev <= static_cast<int32_t>(Severity::kWARNING))
				tl_capture->lines.emplace_back(text);
			std::lock_guard<std::mutex> lock(mu_);
			if (sev > max_severity_)
				return;
			if (queue_.size() >= kQueueCap) {
				queue_.pop_front();
				dropped_++;
			}
			queue_.push_back(Line{sev, text});
		} catch (...) {
			// Logging must never throw into TensorRT.
		}
	}

	void set_level(int32_t max_severity) noexcept
	{
		std::lock_guard<std::mutex> lock(mu_);
		max_severity_ = max_severity;
	}

	int32_t drain(jt_log_line *out, int32_t cap, int64_t *dropped) noexcept
	{
		std::lock_guard<std::mutex> lock(mu_);
		int32_t n = 0;
		while (n < cap && !queue_.empty()) {
			Line const &l = queue_.front();
			out[n].severity = l.severity;
			std::snprintf(out[n].message, sizeof out[n].message, "%s", l.text.c_str());
			queue_.pop_front();
			n++;
		}
		if (dropped) {
			*dropped = dropped_;
			dropped_ = 0;
		}
		return n;
	}

	int32_t size() noexcept
	{
		std::lock_guard<std::mutex> lock(mu_);
		return static_cast<int32_t>(queue_.size());
	}

private:
	std::mutex mu_;
	std::deque<Line> queue_;
	int64_t dropped_ = 0;
	int32_t max_severity_ = static_cast<int32_t>(Severity::kWARNING);
};

Logger &the_logger()
{
	// Never destroyed: TensorRT may log while objects are torn down at exit.
	static Logger *l = new Logger();
	return *l;
}

int32_t elem_size(DataType t) noexcept
{
	switch (t) {
	case DataType::kFLOAT:
	case DataType::kINT32:
		return 4;
	case DataType::kHALF:
	case DataType::kBF16:
		return 2;
	case DataType::kINT8:
	case DataType::kUINT8:
	case DataType::kBOOL:
		return 1;
	case DataType::kINT64:
		return 8;
	default:
		return 0; // FP8, INT4, FP4, E8M0 and later types: not IO types jetinfer supports
	}
}

int32_t jt_dtype(DataType t) noexcept
{
	switch (t) {
	case DataType::kFLOAT:
		return JT_DTYPE_FLOAT32;
	case DataType::kHALF:
		return JT_DTYPE_FLOAT16;
	case DataType::kBF16:
		return JT_DTYPE_BFLOAT16;
	case DataType::kINT8:
		return JT_DTYPE_INT8;
	case DataType::kUINT8:
		return JT_DTYPE_UINT8;
	case DataType::kINT32:
		return JT_DTYPE_INT32;
	case DataType::kINT64:
		return JT_DTYPE_INT64;
	case DataType::kBOOL:
		return JT_DTYPE_BOOL;
	default:
		return JT_DTYPE_UNSUPPORTED;
	}
}

// PluginLibraries is the process's record of plugin libraries registered
// with TensorRT's process-wide plugin registry, keyed by resolved path.
// TensorRT's loadLibrary returns null when a library's plugins are already
// registered, so each library is loaded once and its handle kept for the
// life of the process (never deregistered: engines may still use it).
struct PluginLibraries {
	std::mutex mu;
	std::map<std::string, IPluginRegistry::PluginLibraryHandle> loaded;
	bool standard = false;
};

PluginLibraries &plugin_libraries()
{
	static PluginLibraries *p = new PluginLibraries(); // never destroyed, like the registry
	return *p;
}

} // namespace

ILogger &logger() { return the_logger(); }

int32_t init_standard_plugins(jt_status *st, Capture const &cap)
{
	PluginLibraries &p = plugin_libraries();
	std::lock_guard<std::mutex> lock(p.mu);
	if (p.standard)
		return JT_OK;
	if (!initLibNvInferPlugins(&the_logger(), ""))
		return fail(st, cap, JT_ERR_TENSORRT, "registering TensorRT's standard plugins (initLibNvInferPlugins) failed");
	p.standard = true;
	return JT_OK;
}

int32_t load_plugin_library(char const *path, jt_status *st, Capture const &cap)
{
	if (path == nullptr || path[0] == '\0')
		return fail(st, cap, JT_ERR_INVALID, "plugin library path is empty");
	char resolved[PATH_MAX];
	if (realpath(path, resolved) == nullptr)
		return fail(st, cap, JT_ERR_INVALID,
		            std::string("plugin library ") + path + " not found: " + std::strerror(errno));
	PluginLibraries &p = plugin_libraries();
	std::lock_guard<std::mutex> lock(p.mu);
	if (p.loaded.count(resolved) != 0)
		return JT_OK;
	IPluginRegistry *reg = getPluginRegistry();
	if (reg == nullptr)
		return fail(st, cap, JT_ERR_TENSORRT, "TensorRT's plugin registry is unavailable");
	IPluginRegistry::PluginLibraryHandle h = reg->loadLibrary(resolved);
	if (h == nullptr)
		return fail(st, cap, JT_ERR_TENSORRT,
		            std::string("loading plugin library ") + resolved +
		                " failed (not a TensorRT plugin library, a missing dependency, or its plugins are already "
		                "registered by another library)");
	p.loaded.emplace(resolved, h);
	return JT_OK;
}

int32_t queued() { return the_logger().size(); }

Capture::Capture() noexcept : prev_(tl_capture) { tl_capture = this; }

Capture::~Capture() { tl_capture = prev_; }

int32_t fail(jt_status *st, Capture const &cap, int32_t code, char const *what) noexcept
{
	st->code = code;
	st->cuda_error = 0;
	size_t n = static_cast<size_t>(std::snprintf(st->message, sizeof st->message, "%s", what));
	if (n >= sizeof st->message)
		return code;
	bool first = true;
	for (std::string const &l : cap.lines) {
		int w = std::snprintf(st->message + n, sizeof st->message - n, "%s%s",
		                      first ? "; TensorRT said: " : " | ", l.c_str());
		first = false;
		if (w < 0 || n + static_cast<size_t>(w) >= sizeof st->message)
			break;
		n += static_cast<size_t>(w);
	}
	return code;
}

} // namespace jetinfer_trt

using namespace jetinfer_trt;

struct jt_runtime {
	int32_t device = 0;
	std::unique_ptr<IRuntime> rt;
};

struct jt_engine {
	int32_t device = 0;
	std::unique_ptr<ICudaEngine> engine;
	std::vector<std::string> names;
	std::vector<TensorIOMode> modes;
	std::vector<int32_t> elem_sizes;
	int32_t nb_profiles = 0;
};

struct jt_context {
	jt_engine *eng = nullptr;
	std::unique_ptr<IExecutionContext> ctx;
	uint64_t stream = 0;
	uint64_t event = 0;
	int32_t profile = -1; // -1: not selected yet by this shim
	std::vector<jc_copy> h2d, d2h;
	std::vector<char> seen;
};

namespace {

extern "C" {
// enqueue_work is the jc_batch work slot: it runs enqueueV3 on the batch's
// stream between the input and output copies. It has C linkage because
// jc_work_fn is a C function pointer type.
static int32_t enqueue_work(void *arg, cudaStream_t stream, jc_status *st)
{
	IExecutionContext *ctx = static_cast<IExecutionContext *>(arg);
	if (!ctx->enqueueV3(stream))
		return jc_fail(st, JC_ERR_WORK, "enqueueV3 failed");
	return JC_OK;
}
}

bool check_index(jt_status *st, Capture const &cap, jt_engine const *e, int32_t index)
{
	if (index < 0 || static_cast<size_t>(index) >= e->names.size()) {
		fail(st, cap, JT_ERR_INVALID,
		     "IO tensor index " + std::to_string(index) + " out of range (engine has " +
		         std::to_string(e->names.size()) + ")");
		return false;
	}
	return true;
}

// prepare selects the profile if needed, sets input shapes, runs shape
// inference and fills the outputs' shapes and sizes.
int32_t prepare(jt_context *c, int32_t profile, jt_binding *in, int32_t n_in, jt_binding *out, int32_t n_out,
                jt_status *st, Capture const &cap)
{
	jt_engine const *e = c->eng;
	if (profile < 0 || profile >= e->nb_profiles)
		return fail(st, cap, JT_ERR_INVALID,
		            "optimization profile " + std::to_string(profile) + " out of range (engine has " +
		                std::to_string(e->nb_profiles) + ")");
	if (n_in < 0 || n_out < 0 || static_cast<size_t>(n_in) + static_cast<size_t>(n_out) != e->names.size())
		return fail(st, cap, JT_ERR_INVALID,
		            "a batch must bind every IO tensor exactly once: got " + std::to_string(n_in) + " inputs and " +
		                std::to_string(n_out) + " outputs for " + std::to_string(e->names.size()) + " tensors");
	c->seen.assign(e->names.size(), 0);
	for (int32_t i = 0; i < n_in + n_out; i++) {
		jt_binding const &b = i < n_in ? in[i] : out[i - n_in];
		if (!check_index(st, cap, e, b.index))
			return st->code;
		bool want_input = i < n_in;
		if ((e->modes[b.index] == TensorIOMode::kINPUT) != want_input || c->seen[b.index])
			return fail(st, cap, JT_ERR_INVALID,
			            "tensor " + e->names[b.index] + " bound twice or as the wrong direction");
		c->seen[b.index] = 1;
	}
	if (c->profile != profile) {
		if (!c->ctx->setOptimizationProfileAsync(profile, jc_stream_of(c->stream)))
			return fail(st, cap, JT_ERR_TENSORRT,
			            "selecting optimization profile " + std::to_string(profile) + " failed");
		c->profile = profile;
	}
	for (int32_t i = 0; i < n_in; i++) {
		Dims d;
		std::string const &name = e->names[in[i].index];
		if (!to_dims(in[i].nb_dims, in[i].dims, d))
			return fail(st, cap, JT_ERR_INVALID, "input " + name + " has an invalid rank");
		if (!c->ctx->setInputShape(name.c_str(), d)) {
			Dims lo = e->engine->getProfileShape(name.c_str(), profile, OptProfileSelector::kMIN);
			Dims hi = e->engine->getProfileShape(name.c_str(), profile, OptProfileSelector::kMAX);
			return fail(st, cap, JT_ERR_INVALID,
			            "input " + name + " shape " + dims_string(d) + " is outside profile " +
			                std::to_string(profile) + " (min " + dims_string(lo) + ", max " + dims_string(hi) + ")");
		}
	}
	char const *missing[4] = {nullptr, nullptr, nullptr, nullptr};
	int32_t r = c->ctx->inferShapes(4, missing);
	if (r > 0) {
		std::string names;
		for (int32_t i = 0; i < r && i < 4; i++)
			names += std::string(i ? ", " : "") + (missing[i] ? missing[i] : "?");
		return fail(st, cap, JT_ERR_INVALID, "shape inference needs values or shapes for: " + names);
	}
	if (r < 0)
		return fail(st, cap, JT_ERR_TENSORRT, "shape inference failed");
	for (int32_t i = 0; i < n_in; i++) {
		int64_t elems = 1;
		for (int32_t k = 0; k < in[i].nb_dims; k++)
			elems *= in[i].dims[k];
		uint64_t need = static_cast<uint64_t>(elems) * static_cast<uint64_t>(e->elem_sizes[in[i].index]);
		if (in[i].bytes != need)
			return fail(st, cap, JT_ERR_INVALID,
			            "input " + e->names[in[i].index] + " of shape " + dims_string(in[i].nb_dims, in[i].dims) +
			                " needs " + std::to_string(need) + " bytes, got " + std::to_string(in[i].bytes));
	}
	for (int32_t i = 0; i < n_out; i++) {
		std::string const &name = e->names[out[i].index];
		Dims d = c->ctx->getTensorShape(name.c_str());
		if (d.nbDims < 0 || d.nbDims > JT_MAX_DIMS)
			return fail(st, cap, JT_ERR_TENSORRT, "reading the shape of output " + name + " failed");
		int64_t elems = 1;
		for (int32_t k = 0; k < d.nbDims; k++) {
			if (d.d[k] < 0)
				return fail(st, cap, JT_ERR_UNSUPPORTED,
				            "output " + name + " has a data-dependent shape " + dims_string(d) +
				                "; jetinfer does not implement IOutputAllocator");
			elems *= d.d[k];
		}
		out[i].nb_dims = d.nbDims;
		for (int32_t k = 0; k < d.nbDims; k++)
			out[i].dims[k] = d.d[k];
		out[i].bytes = static_cast<uint64_t>(elems) * static_cast<uint64_t>(e->elem_sizes[out[i].index]);
	}
	return JT_OK;
}

} // namespace

extern "C" {

int32_t jt_linked_version(void)
{
	try {
		return getInferLibVersion();
	} catch (...) {
		return -1;
	}
}

int32_t jt_linked_build(void)
{
	try {
		return getInferLibBuildVersion();
	} catch (...) {
		return -1;
	}
}

int32_t jt_header_version(void) { return NV_TENSORRT_VERSION; }

int32_t jt_header_build(void) { return NV_TENSORRT_BUILD; }

void jt_log_set_level(int32_t max_severity)
{
	try {
		the_logger().set_level(max_severity);
	} catch (...) {
	}
}

int32_t jt_log_drain(jt_log_line *out, int32_t cap, int64_t *dropped)
{
	try {
		return the_logger().drain(out, cap, dropped);
	} catch (...) {
		return 0;
	}
}

int32_t jt_runtime_create(int32_t device, int32_t allow_host_code, jt_runtime **out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		*out = nullptr;
		if (set_device(st, cap, device) != JT_OK)
			return st->code;
		if (init_standard_plugins(st, cap) != JT_OK)
			return st->code;
		std::unique_ptr<jt_runtime> r(new jt_runtime);
		r->device = device;
		r->rt.reset(createInferRuntime(logger()));
		if (!r->rt)
			return fail(st, cap, JT_ERR_TENSORRT, "createInferRuntime failed");
		r->rt->setEngineHostCodeAllowed(allow_host_code != 0);
		*out = r.release();
		return JT_OK;
	});
}

int32_t jt_plugin_load(int32_t device, const char *path, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		if (set_device(st, cap, device) != JT_OK) // plugin initializers may touch the GPU
			return st->code;
		return load_plugin_library(path, st, cap);
	});
}

void jt_runtime_destroy(jt_runtime *rt)
{
	try {
		if (rt) {
			cudaSetDevice(rt->device);
			delete rt;
		}
	} catch (...) {
	}
}

int32_t jt_engine_deserialize(jt_runtime *rt, const void *plan, uint64_t size, jt_engine **out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		*out = nullptr;
		if (set_device(st, cap, rt->device) != JT_OK)
			return st->code;
		std::unique_ptr<jt_engine> e(new jt_engine);
		e->device = rt->device;
		e->engine.reset(rt->rt->deserializeCudaEngine(plan, static_cast<size_t>(size)));
		if (!e->engine)
			return fail(st, cap, JT_ERR_TENSORRT,
			            "deserializing the plan failed (built for another TensorRT version or GPU, or corrupt)");
		int32_t n = e->engine->getNbIOTensors();
		e->nb_profiles = e->engine->getNbOptimizationProfiles();
		for (int32_t i = 0; i < n; i++) {
			char const *name = e->engine->getIOTensorName(i);
			if (name == nullptr)
				return fail(st, cap, JT_ERR_TENSORRT, "IO tensor " + std::to_string(i) + " has no name");
			e->names.emplace_back(name);
			e->modes.push_back(e->engine->getTensorIOMode(name));
			e->elem_sizes.push_back(elem_size(e->engine->getTensorDataType(name)));
		}
		*out = e.release();
		return JT_OK;
	});
}

void jt_engine_destroy(jt_engine *e)
{
	try {
		if (e) {
			cudaSetDevice(e->device);
			delete e;
		}
	} catch (...) {
	}
}

int32_t jt_engine_counts(const jt_engine *e, int32_t *nb_io, int32_t *nb_profiles, jt_status *st)
{
	return guard(st, [&](Capture &) -> int32_t {
		*nb_io = static_cast<int32_t>(e->names.size());
		*nb_profiles = e->nb_profiles;
		return JT_OK;
	});
}

int32_t jt_engine_tensor(const jt_engine *e, int32_t index, jt_tensor_info *out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		if (!check_index(st, cap, e, index))
			return st->code;
		std::string const &name = e->names[index];
		char const *n = name.c_str();
		ICudaEngine const &eng = *e->engine;
		std::memset(out, 0, sizeof *out);
		if (name.size() >= sizeof out->name)
			return fail(st, cap, JT_ERR_UNSUPPORTED, "IO tensor name longer than 1023 bytes: " + name.substr(0, 64) + "...");
		std::memcpy(out->name, n, name.size() + 1);
		switch (e->modes[index]) {
		case TensorIOMode::kINPUT:
			out->mode = JT_IO_INPUT;
			break;
		case TensorIOMode::kOUTPUT:
			out->mode = JT_IO_OUTPUT;
			break;
		default:
			out->mode = JT_IO_NONE;
			break;
		}
		DataType dt = eng.getTensorDataType(n);
		out->trt_dtype = static_cast<int32_t>(dt);
		out->dtype = jt_dtype(dt);
		out->elem_size = elem_size(dt);
		Dims d = eng.getTensorShape(n);
		if (d.nbDims < 0 || d.nbDims > JT_MAX_DIMS)
			return fail(st, cap, JT_ERR_TENSORRT, "reading the shape of " + name + " failed");
		out->nb_dims = d.nbDims;
		for (int32_t k = 0; k < d.nbDims; k++)
			out->dims[k] = d.d[k];
		out->linear = 1;
		for (int32_t p = 0; p < e->nb_profiles; p++) {
			TensorFormat f = eng.getTensorFormat(n, p);
			if (f != TensorFormat::kLINEAR || eng.getTensorVectorizedDim(n, p) != -1) {
				out->linear = 0;
				out->trt_format = static_cast<int32_t>(f);
				break;
			}
		}
		out->shape_tensor = eng.isShapeInferenceIO(n) ? 1 : 0;
		out->on_host = eng.getTensorLocation(n) == TensorLocation::kHOST ? 1 : 0;
		return JT_OK;
	});
}

int32_t jt_engine_profile_shape(const jt_engine *e, int32_t index, int32_t profile, int32_t which, int32_t *nb_dims,
                                int64_t *dims, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		if (!check_index(st, cap, e, index))
			return st->code;
		if (profile < 0 || profile >= e->nb_profiles)
			return fail(st, cap, JT_ERR_INVALID, "optimization profile " + std::to_string(profile) + " out of range");
		OptProfileSelector sel;
		switch (which) {
		case JT_PROFILE_MIN:
			sel = OptProfileSelector::kMIN;
			break;
		case JT_PROFILE_OPT:
			sel = OptProfileSelector::kOPT;
			break;
		case JT_PROFILE_MAX:
			sel = OptProfileSelector::kMAX;
			break;
		default:
			return fail(st, cap, JT_ERR_INVALID, "unknown profile selector " + std::to_string(which));
		}
		Dims d = e->engine->getProfileShape(e->names[index].c_str(), profile, sel);
		if (d.nbDims < 0 || d.nbDims > JT_MAX_DIMS)
			return fail(st, cap, JT_ERR_TENSORRT,
			            "reading profile " + std::to_string(profile) + " of " + e->names[index] + " failed");
		*nb_dims = d.nbDims;
		for (int32_t k = 0; k < d.nbDims; k++)
			dims[k] = d.d[k];
		return JT_OK;
	});
}

int32_t jt_context_create(jt_engine *e, jt_context **out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		*out = nullptr;
		if (set_device(st, cap, e->device) != JT_OK)
			return st->code;
		std::unique_ptr<jt_context> c(new jt_context);
		c->eng = e;
		c->h2d.reserve(e->names.size());
		c->d2h.reserve(e->names.size());
		c->ctx.reset(e->engine->createExecutionContext());
		if (!c->ctx)
			return fail(st, cap, JT_ERR_TENSORRT, "createExecutionContext failed (out of device memory?)");
		jc_status cs;
		if (jc_stream_create(e->device, &c->stream, &c->event, &cs) != JC_OK)
			return fail_cuda(st, cap, cs);
		*out = c.release();
		return JT_OK;
	});
}

int32_t jt_context_destroy(jt_context *c, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		if (c == nullptr)
			return JT_OK;
		std::unique_ptr<jt_context> owned(c);
		jc_status cs;
		int32_t rc = jc_stream_destroy(c->eng->device, c->stream, c->event, &cs); // waits for the stream
		owned->ctx.reset();
		if (rc != JC_OK)
			return fail_cuda(st, cap, cs);
		return JT_OK;
	});
}

int32_t jt_context_shapes(jt_context *c, int32_t profile, jt_binding *inputs, int32_t n_in, jt_binding *outputs,
                          int32_t n_out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		if (set_device(st, cap, c->eng->device) != JT_OK)
			return st->code;
		return prepare(c, profile, inputs, n_in, outputs, n_out, st, cap);
	});
}

int32_t jt_context_enqueue(jt_context *c, int32_t profile, jt_binding *inputs, int32_t n_in, jt_binding *outputs,
                           int32_t n_out, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		jt_engine const *e = c->eng;
		if (set_device(st, cap, e->device) != JT_OK)
			return st->code;
		if (prepare(c, profile, inputs, n_in, outputs, n_out, st, cap) != JT_OK)
			return st->code;
		c->h2d.clear();
		c->d2h.clear();
		for (int32_t i = 0; i < n_in + n_out; i++) {
			jt_binding const &b = i < n_in ? inputs[i] : outputs[i - n_in];
			std::string const &name = e->names[b.index];
			if (b.bytes > b.device_bytes || b.bytes > b.host_bytes)
				return fail(st, cap, JT_ERR_CAPACITY,
				            "tensor " + name + " needs " + std::to_string(b.bytes) + " bytes; device buffer holds " +
				                std::to_string(b.device_bytes) + ", host buffer " + std::to_string(b.host_bytes));
			if (b.device == 0 || (b.bytes > 0 && b.host == nullptr))
				return fail(st, cap, JT_ERR_INVALID, "tensor " + name + " has no buffer");
			if (!c->ctx->setTensorAddress(name.c_str(), jc_dev_ptr(b.device)))
				return fail(st, cap, JT_ERR_TENSORRT, "binding the device address of " + name + " failed");
			jc_copy cp;
			cp.device = b.device;
			cp.host = b.host;
			cp.bytes = b.bytes;
			(i < n_in ? c->h2d : c->d2h).push_back(cp);
		}
		jc_status cs;
		int32_t rc = jc_batch(e->device, c->stream, c->h2d.data(), static_cast<int32_t>(c->h2d.size()), enqueue_work,
		                      c->ctx.get(), c->d2h.data(), static_cast<int32_t>(c->d2h.size()), c->event, &cs);
		if (rc == JC_ERR_WORK) {
			// enqueueV3 returns false without a CUDA code; a sticky error
			// of the context (an earlier kernel's illegal address) shows
			// on the stream.
			jc_status ps;
			if (jc_stream_probe(e->device, c->stream, &ps) != JC_OK) {
				fail_cuda(st, cap, ps);
				std::string msg = std::string("enqueueV3 failed: ") + ps.message;
				int32_t lost = st->device_lost, cerr = st->cuda_error;
				fail(st, cap, JT_ERR_CUDA, msg);
				st->device_lost = lost;
				st->cuda_error = cerr;
				return JT_ERR_CUDA;
			}
			return fail(st, cap, JT_ERR_TENSORRT, "enqueueV3 failed");
		}
		if (rc != JC_OK)
			return fail_cuda(st, cap, cs);
		return JT_OK;
	});
}

int32_t jt_context_wait(jt_context *c, jt_status *st)
{
	return guard(st, [&](Capture &cap) -> int32_t {
		jc_status cs;
		if (jc_event_wait(c->eng->device, c->event, &cs) != JC_OK)
			return fail_cuda(st, cap, cs);
		return JT_OK;
	});
}

} // extern "C"
