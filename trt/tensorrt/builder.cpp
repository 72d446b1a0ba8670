//go:build tensorrt && cgo

// builder.cpp: the offline half of jetinfer's TensorRT shim: ONNX model ->
// serialized plan (jt_build in shim.h). It is a separate translation unit
// because it needs NvInfer.h and NvOnnxParser.h (libnvinfer +
// libnvonnxparser), which the runtime half does not.
//
// Precision: on TensorRT 11 every network is strongly typed and the
// FP16/BF16/INT8 builder flags and INT8 calibrators no longer exist, so
// jt_build refuses them with a message saying what to do instead. On
// TensorRT 10 they remain available for weakly typed networks (deprecated
// since 10.1 in favour of explicit quantization); the deprecation warnings
// are silenced only around that legacy path.

#include "shim_internal.hpp"

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <cstdlib>
#include <memory>

using namespace nvinfer1;
using namespace jetinfer_trt;

namespace {

#define JT_LEGACY_PRECISION (NV_TENSORRT_MAJOR < 11)

#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 9)
#define JT_HAVE_SAME_CC 1
#else
#define JT_HAVE_SAME_CC 0
#endif

bool copy_out(void const *data, size_t size, jt_buffer &out)
{
	out.data = nullptr;
	out.size = 0;
	if (size == 0)
		return true;
	out.data = std::malloc(size);
	if (out.data == nullptr)
		return false;
	std::memcpy(out.data, data, size);
	out.size = size;
	return true;
}

bool set_range(IOptimizationProfile &p, jt_shape_range const &r, jt_status *st, Capture const &cap)
{
	Dims lo, opt, hi;
	if (r.name == nullptr || !to_dims(r.nb_dims, r.min, lo) || !to_dims(r.nb_dims, r.opt, opt) ||
	    !to_dims(r.nb_dims, r.max, hi)) {
		fail(st, cap, JT_ERR_INVALID, "a profile shape range has no input name or an invalid rank");
		return false;
	}
	if (!p.setDimensions(r.name, OptProfileSelector::kMIN, lo) || !p.setDimensions(r.name, OptProfileSelector::kOPT, opt) ||
	    !p.setDimensions(r.name, OptProfileSelector::kMAX, hi)) {
		fail(st, cap, JT_ERR_INVALID,
		     std::string("setting the profile of input ") + r.name + " to min " + dims_string(r.nb_dims, r.min) +
		         " opt " + dims_string(r.nb_dims, r.opt) + " max " + dims_string(r.nb_dims, r.max) +
		         " failed (need min <= opt <= max and the network's rank)");
		return false;
	}
	return true;
}

#if JT_LEGACY_PRECISION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

// EntropyCalibrator feeds the host batches given in jt_calibration to
// TensorRT's INT8 entropy calibration (TensorRT 10 only). getBatch runs on
// the builder's thread; copies are synchronous.
class EntropyCalibrator final : public IInt8EntropyCalibrator2 {
public:
	EntropyCalibrator(int32_t device, jt_calibration const &c) : device_(device), c_(c) {}

	~EntropyCalibrator() override
	{
		for (void *p : dev_)
			if (p)
				cudaFree(p);
	}

	// init allocates one device buffer per input.
	bool init(jt_status *st, Capture const &cap)
	{
		if (set_device(st, cap, device_) != JT_OK)
			return false;
		dev_.assign(static_cast<size_t>(c_.n_inputs), nullptr);
		for (int32_t i = 0; i < c_.n_inputs; i++) {
			cudaError_t err = cudaMalloc(&dev_[i], c_.input_bytes[i] ? c_.input_bytes[i] : 1);
			if (err != cudaSuccess) {
				jc_status cs;
				jc_cuda_fail(&cs, "cudaMalloc for a calibration input", err);
				fail_cuda(st, cap, cs);
				return false;
			}
		}
		return true;
	}

	int32_t getBatchSize() const noexcept override
	{
		return 1; // explicit-batch networks: the batch dimension is part of each input's shape
	}

	bool getBatch(void *bindings[], char const *names[], int32_t nb) noexcept override
	{
		try {
			if (next_ >= c_.n_batches)
				return false;
			for (int32_t b = 0; b < nb; b++) {
				int32_t idx = -1;
				for (int32_t i = 0; i < c_.n_inputs; i++)
					if (std::strcmp(c_.shapes[i].name, names[b]) == 0)
						idx = i;
				if (idx < 0) {
					error_ = std::string("calibration batch ") + std::to_string(next_) + " has no input named " +
					         names[b];
					return false;
				}
				void const *src = c_.batches[static_cast<size_t>(next_) * static_cast<size_t>(c_.n_inputs) + idx];
				cudaError_t err = cudaMemcpy(dev_[idx], src, c_.input_bytes[idx], cudaMemcpyHostToDevice);
				if (err != cudaSuccess) {
					error_ = std::string("copying calibration batch ") + std::to_string(next_) + ": " +
					         cudaGetErrorString(err);
					return false;
				}
				bindings[b] = dev_[idx];
			}
			next_++;
			return true;
		} catch (...) {
			error_ = "calibration batch " + std::to_string(next_) + ": C++ exception";
			return false;
		}
	}

	void const *readCalibrationCache(std::size_t &length) noexcept override
	{
		length = static_cast<size_t>(c_.cache_size);
		return c_.cache_size ? c_.cache : nullptr;
	}

	void writeCalibrationCache(void const *ptr, std::size_t length) noexcept override
	{
		try {
			written_.assign(static_cast<char const *>(ptr), static_cast<char const *>(ptr) + length);
		} catch (...) {
		}
	}

	std::string const &error() const { return error_; }
	int32_t served() const { return next_; }
	std::vector<char> const &written() const { return written_; }

private:
	int32_t device_;
	jt_calibration const &c_;
	std::vector<void *> dev_;
	int32_t next_ = 0;
	std::string error_;
	std::vector<char> written_;
};

// apply_legacy_precision sets the TensorRT 10 precision flags and the INT8
// calibrator and calibration profile.
bool apply_legacy_precision(IBuilder &builder, IBuilderConfig &config, jt_build_options const &o,
                            std::unique_ptr<EntropyCalibrator> &cal, jt_status *st, Capture const &cap)
{
	if (o.precision & JT_PRECISION_FP16)
		config.setFlag(BuilderFlag::kFP16);
	if (o.precision & JT_PRECISION_BF16)
		config.setFlag(BuilderFlag::kBF16);
	if (o.precision & JT_PRECISION_INT8)
		config.setFlag(BuilderFlag::kINT8);
	if (o.calibration == nullptr)
		return true;
	jt_calibration const &c = *o.calibration;
	if (c.n_inputs <= 0 || c.n_batches <= 0 || c.shapes == nullptr || c.input_bytes == nullptr || c.batches == nullptr) {
		fail(st, cap, JT_ERR_INVALID, "INT8 calibration needs at least one batch of every input");
		return false;
	}
	IOptimizationProfile *p = builder.createOptimizationProfile();
	if (p == nullptr) {
		fail(st, cap, JT_ERR_TENSORRT, "creating the calibration profile failed");
		return false;
	}
	for (int32_t i = 0; i < c.n_inputs; i++)
		if (!set_range(*p, c.shapes[i], st, cap))
			return false;
	if (!config.setCalibrationProfile(p)) {
		fail(st, cap, JT_ERR_TENSORRT, "setting the calibration profile failed");
		return false;
	}
	cal.reset(new EntropyCalibrator(o.device, c));
	if (!cal->init(st, cap))
		return false;
	config.setInt8Calibrator(cal.get());
	return true;
}

#pragma GCC diagnostic pop
#endif // JT_LEGACY_PRECISION

int32_t build(void const *onnx, uint64_t onnx_size, jt_build_options const &o, jt_build_result *out, jt_status *st,
              Capture &cap)
{
	bool legacy = o.precision != 0 || o.calibration != nullptr;
#if !JT_LEGACY_PRECISION
	if (legacy)
		return fail(st, cap, JT_ERR_UNSUPPORTED,
		            "TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) +
		                " has no FP16/BF16/INT8 builder flags and no INT8 calibration: networks are always strongly "
		                "typed, so put the precision into the ONNX model (FP16/BF16 weights and casts, or "
		                "QuantizeLinear/DequantizeLinear nodes for INT8/FP8) and build without precision flags");
#else
	if (legacy && o.strongly_typed)
		return fail(st, cap, JT_ERR_INVALID,
		            "a strongly typed network takes its precision from the ONNX model; the fp16/bf16/int8 flags "
		            "and INT8 calibration apply only to weakly typed networks");
	if (o.calibration != nullptr && !(o.precision & JT_PRECISION_INT8))
		return fail(st, cap, JT_ERR_INVALID, "calibration data given without the int8 precision flag");
#endif
	if (o.n_profiles <= 0 || o.profiles == nullptr)
		return fail(st, cap, JT_ERR_INVALID, "building needs at least one optimization profile");
	if (set_device(st, cap, o.device) != JT_OK)
		return st->code;

	// Plugins first: a missing or broken library fails here, before
	// parsing and the long build. Each library is registered once per
	// process, so building, then deserializing the plan to read it back,
	// or building twice, all work.
	if (init_standard_plugins(st, cap) != JT_OK)
		return st->code;
	for (int32_t i = 0; i < o.n_plugins; i++)
		if (load_plugin_library(o.plugin_paths[i], st, cap) != JT_OK)
			return st->code;
	std::unique_ptr<IBuilder> builder(createInferBuilder(logger()));
	if (!builder)
		return fail(st, cap, JT_ERR_TENSORRT, "createInferBuilder failed");

	NetworkDefinitionCreationFlags flags = 0;
#if JT_LEGACY_PRECISION
	if (o.strongly_typed)
		flags |= 1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif
	std::unique_ptr<INetworkDefinition> network(builder->createNetworkV2(flags));
	if (!network)
		return fail(st, cap, JT_ERR_TENSORRT, "createNetworkV2 failed");
	std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
	if (!parser)
		return fail(st, cap, JT_ERR_TENSORRT, "creating the ONNX parser failed");
	if (!parser->parse(onnx, static_cast<size_t>(onnx_size), o.onnx_path)) {
		std::string msg = "parsing the ONNX model failed";
		for (int32_t i = 0; i < parser->getNbErrors() && i < 8; i++) {
			nvonnxparser::IParserError const *pe = parser->getError(i);
			if (pe == nullptr)
				continue;
			msg += std::string(i ? " | " : ": ") + "node " + std::to_string(pe->node());
			if (pe->nodeName() != nullptr && pe->nodeName()[0] != '\0')
				msg += std::string(" (") + pe->nodeName() + ")";
			msg += std::string(": ") + (pe->desc() ? pe->desc() : "?");
		}
		return fail(st, cap, JT_ERR_INVALID, msg);
	}

	std::unique_ptr<IBuilderConfig> config(builder->createBuilderConfig());
	if (!config)
		return fail(st, cap, JT_ERR_TENSORRT, "createBuilderConfig failed");
	if (o.workspace_bytes > 0)
		config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<size_t>(o.workspace_bytes));
	if (o.optimization_level >= 0) {
		if (o.optimization_level > 5)
			return fail(st, cap, JT_ERR_INVALID, "builder optimization level must be 0..5");
		config->setBuilderOptimizationLevel(o.optimization_level);
	}
	std::unique_ptr<ITimingCache> cache(
	    config->createTimingCache(o.timing_cache, o.timing_cache ? static_cast<size_t>(o.timing_cache_size) : 0));
	if (!cache)
		return fail(st, cap, JT_ERR_INVALID, "the timing cache is corrupt or from another TensorRT version");
	if (!config->setTimingCache(*cache, false))
		return fail(st, cap, JT_ERR_INVALID,
		            "the timing cache was made for another GPU or TensorRT version; remove it to start a fresh one");
	switch (o.hardware_compat) {
	case JT_HWCOMPAT_NONE:
		config->setHardwareCompatibilityLevel(HardwareCompatibilityLevel::kNONE);
		break;
	case JT_HWCOMPAT_AMPERE_PLUS:
		config->setHardwareCompatibilityLevel(HardwareCompatibilityLevel::kAMPERE_PLUS);
		break;
	case JT_HWCOMPAT_SAME_COMPUTE_CAPABILITY:
#if JT_HAVE_SAME_CC
		config->setHardwareCompatibilityLevel(HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY);
		break;
#else
		return fail(st, cap, JT_ERR_UNSUPPORTED, "same-compute-capability plans need TensorRT 10.9 or newer");
#endif
	default:
		return fail(st, cap, JT_ERR_INVALID, "unknown hardware compatibility level " + std::to_string(o.hardware_compat));
	}
	if (o.version_compatible) {
		config->setFlag(BuilderFlag::kVERSION_COMPATIBLE);
		if (o.exclude_lean_runtime)
			config->setFlag(BuilderFlag::kEXCLUDE_LEAN_RUNTIME);
		if (o.n_plugins > 0)
			config->setPluginsToSerialize(o.plugin_paths, o.n_plugins);
	}
	for (int32_t i = 0; i < o.n_profiles; i++) {
		IOptimizationProfile *p = builder->createOptimizationProfile();
		if (p == nullptr)
			return fail(st, cap, JT_ERR_TENSORRT, "createOptimizationProfile failed");
		for (int32_t k = 0; k < o.profiles[i].n_inputs; k++)
			if (!set_range(*p, o.profiles[i].inputs[k], st, cap))
				return st->code;
		if (config->addOptimizationProfile(p) < 0)
			return fail(st, cap, JT_ERR_INVALID,
			            "optimization profile " + std::to_string(i) + " is invalid (every dynamic input needs a range)");
	}
#if JT_LEGACY_PRECISION
	std::unique_ptr<EntropyCalibrator> cal;
	if (!apply_legacy_precision(*builder, *config, o, cal, st, cap))
		return st->code;
#endif

	std::unique_ptr<IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
#if JT_LEGACY_PRECISION
	// A getBatch failure looks like the end of the data to TensorRT, which
	// would calibrate on fewer batches without a word: fail the build.
	if (cal && !cal->error().empty())
		return fail(st, cap, JT_ERR_INVALID, "INT8 calibration failed: " + cal->error());
	if (cal && cal->served() > 0 && cal->served() < o.calibration->n_batches)
		return fail(st, cap, JT_ERR_TENSORRT,
		            "INT8 calibration stopped after " + std::to_string(cal->served()) + " of " +
		                std::to_string(o.calibration->n_batches) + " batches");
#endif
	if (!plan || plan->size() == 0)
		return fail(st, cap, JT_ERR_TENSORRT, "building the engine failed");
	if (!copy_out(plan->data(), plan->size(), out->plan))
		return fail(st, cap, JT_ERR_NO_MEMORY, "copying the plan: out of memory");
	ITimingCache const *tc = config->getTimingCache();
	if (tc != nullptr) {
		std::unique_ptr<IHostMemory> blob(tc->serialize());
		if (blob && !copy_out(blob->data(), blob->size(), out->timing_cache))
			return fail(st, cap, JT_ERR_NO_MEMORY, "copying the timing cache: out of memory");
	}
#if JT_LEGACY_PRECISION
	if (cal && !cal->written().empty() && !copy_out(cal->written().data(), cal->written().size(), out->calibration_cache))
		return fail(st, cap, JT_ERR_NO_MEMORY, "copying the calibration cache: out of memory");
#endif
	return JT_OK;
}

} // namespace

extern "C" {

int32_t jt_build(const void *onnx, uint64_t onnx_size, const jt_build_options *opts, jt_build_result *out,
                 jt_status *st)
{
	std::memset(out, 0, sizeof *out);
	int32_t rc = guard(st, [&](Capture &cap) -> int32_t { return build(onnx, onnx_size, *opts, out, st, cap); });
	if (rc != JT_OK) {
		jt_buffer_free(&out->plan);
		jt_buffer_free(&out->timing_cache);
		jt_buffer_free(&out->calibration_cache);
	}
	return rc;
}

void jt_buffer_free(jt_buffer *b)
{
	if (b) {
		std::free(b->data);
		b->data = nullptr;
		b->size = 0;
	}
}

} // extern "C"
