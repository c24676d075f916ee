// forkjoin: the command-line entry point.
//   forkjoin --version
//   forkjoin bench backend [--json] [--sizes 1M,10M,50M]
#include "app/commands.h"
#include "base/error.h"
#include "base/version.h"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char ** argv) {
    CLI::App app{"forkjoin: adaptive parallel reasoning on llama.cpp"};
    app.set_version_flag("--version", std::string("forkjoin ") + FORKJOIN_VERSION + " (llama.cpp " +
                                          FORKJOIN_LLAMA_COMMIT + ")");
    app.require_subcommand(1);

    auto * bench = app.add_subcommand("bench", "measure forkjoin");
    bench->require_subcommand(1);
    forkjoin::app::BenchBackendArgs backend_args;
    auto * bench_backend = bench->add_subcommand("backend", "batched decode, fork, KV join and memory of the llama backend");
    forkjoin::app::add_bench_backend_options(*bench_backend, backend_args);

    CLI11_PARSE(app, argc, argv);
    try {
        if (bench_backend->parsed()) return forkjoin::app::run_bench_backend(backend_args);
    } catch (const forkjoin::Error & e) {
        std::fprintf(stderr, "forkjoin: error (%s): %s\n", forkjoin::error_code_name(e.code()), e.what());
        return 1;
    }
    return 0;
}
