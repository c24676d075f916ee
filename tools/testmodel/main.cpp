// forkjoin-testmodel: write a deterministic random Llama-architecture GGUF for tests/benchmarks.
//   forkjoin-testmodel --size 10M --seed 1 -o model.gguf [--f16]
#include "base/error.h"
#include "tools/testmodel/test_model.h"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char ** argv) {
    CLI::App app{"Write a deterministic, randomly initialised Llama-architecture GGUF (not a trained model)"};
    std::string size = "1M", out;
    uint64_t seed = 1;
    bool f16 = false;
    app.add_option("--size", size, "1M, 10M or 50M")->capture_default_str();
    app.add_option("--seed", seed, "weight seed")->capture_default_str();
    app.add_option("-o,--output", out, "output GGUF path")->required();
    app.add_flag("--f16", f16, "store matrices as F16 (default F32)");
    CLI11_PARSE(app, argc, argv);
    try {
        auto spec = forkjoin::testmodel::test_model_spec(size, seed);
        if (f16) spec.matrix_type = forkjoin::gguf::WeightType::f16;
        forkjoin::testmodel::write_test_model(out, spec);
        std::printf("wrote %s: %llu parameters\n", out.c_str(),
                    static_cast<unsigned long long>(forkjoin::testmodel::parameter_count(spec.hparams)));
    } catch (const forkjoin::Error & e) {
        std::fprintf(stderr, "forkjoin-testmodel: %s\n", e.what());
        return 1;
    }
    return 0;
}
