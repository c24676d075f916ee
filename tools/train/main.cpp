// forkjoin-train: train the Countdown model (LibTorch, CPU or CUDA-less build here) and export it.
//
//   forkjoin-train --out runs/cd1 --seed 1 --steps 20000
// Re-running the same command resumes from runs/cd1/state.json. Progress (loss, tokens/s, ETA)
// goes to stdout and runs/cd1/train.log; runs/cd1/model.gguf is the exported model.
#include "base/error.h"
#include "tasks/countdown/held_out.h"
#include "tasks/countdown/problem.h"
#include "tools/train/trainer.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>

using namespace forkjoin;

int main(int argc, char ** argv) {
    CLI::App app{"Train forkjoin's Countdown model (APR format) and export it to GGUF"};
    train::TrainOptions o;
    std::string curriculum = "0:3:1:20,3000:3:1:40,8000:3:1:99";
    int data_stats = 0;
    std::string overlap_path, held_out_path;
    int held_out_count = 0;
    int64_t overlap_from = 0;
    app.add_option("--out", o.out_dir, "run directory (checkpoints, log, model.gguf)");
    app.add_option("--data-stats", data_stats, "print token counts of N problems per curriculum stage and exit");
    app.add_option("--overlap", overlap_path,
                   "JSONL problems: count how many the training stream of these options contains, and exit");
    app.add_option("--overlap-from", overlap_from,
                   "with --overlap: check steps [STEP, --steps) only (a new stage, the earlier ones checked before)")
        ->capture_default_str();
    app.add_option("--held-out", held_out_path, "with --overlap: write the problems the stream never contains here");
    app.add_option("--held-out-count", held_out_count, "with --held-out: keep the first N of them (0: all)");
    app.add_option("--seed", o.seed)->capture_default_str();
    app.add_option("--steps", o.steps)->capture_default_str();
    app.add_option("--batch-tokens", o.batch_tokens)->capture_default_str();
    app.add_option("--lr", o.lr)->capture_default_str();
    app.add_option("--min-lr", o.min_lr)->capture_default_str();
    app.add_option("--warmup", o.warmup)->capture_default_str();
    app.add_option("--schedule-start", o.schedule_start,
                   "warmup and cosine decay start at this step (a new stage resumed from a checkpoint)")
        ->capture_default_str();
    app.add_option("--parallel-share", o.parallel_share, "fraction of problems in parallel mode")->capture_default_str();
    app.add_option("--traces", o.traces_path,
                   "JSONL of the model's own verified examples (forkjoin generate traces), mixed into every batch");
    app.add_option("--traces-share", o.traces_share, "with --traces: fraction of each batch's tokens drawn from them")
        ->capture_default_str();
    std::string exclude;
    app.add_option("--exclude", exclude,
                   "comma-separated JSONL problem files never to train on, besides every *eval*.jsonl in the project's models/ "
                   "(a list starting with none drops those; with --overlap they are not held out unless named): the "
                   "symbolic stream skips their problems and --traces examples of them are dropped");
    app.add_option("--init", o.init_from,
                   "start from this GGUF's weights (e.g. models/countdown.gguf); its shape replaces --embd/--layers/--heads/--ff");
    app.add_option("--beam", o.search.beam_size)->capture_default_str();
    app.add_option("--sub-beam", o.search.sub_beam_size)->capture_default_str();
    app.add_option("--curriculum", curriculum, "stages from_step:count:min_number:max_number, comma-separated; count N-M mixes sizes N..M")
        ->capture_default_str();
    app.add_option("--embd", o.model.n_embd)->capture_default_str();
    app.add_option("--layers", o.model.n_layer)->capture_default_str();
    app.add_option("--heads", o.model.n_head)->capture_default_str();
    app.add_option("--ff", o.model.n_ff)->capture_default_str();
    app.add_option("--ctx", o.model.n_ctx, "longest training sequence")->capture_default_str();
    app.add_option("--log-every", o.log_every)->capture_default_str();
    app.add_option("--checkpoint-every", o.checkpoint_every)->capture_default_str();
    app.add_option("--eval-every", o.eval_every, "0: never")->capture_default_str();
    app.add_option("--eval-problems", o.eval_problems)->capture_default_str();
    app.add_option("--eval-max-tokens", o.eval_max_tokens)->capture_default_str();
    app.add_option("--threads", o.threads, "CPU threads (0: FORKJOIN_THREADS, else the cores other processes leave free at start)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    try {
        o.curriculum = train::parse_curriculum(curriculum);
        // --overlap asks what a stream contained: the shipped stages were trained with nothing excluded,
        // and with the eval sets excluded by default the check would find none of them by construction.
        // There the default is none; an explicit --exclude still names the stream to check.
        const bool checking_overlap = !overlap_path.empty();
        const auto held_out_files =
            countdown::held_out_files(checking_overlap && exclude.empty() ? "none" : exclude, FORKJOIN_MODELS_DIR);
        o.held_out = countdown::load_held_out(held_out_files);
        if (!o.held_out.empty()) {
            std::printf("never trained on: %zu problems of", o.held_out.size());
            for (const auto & f : held_out_files) std::printf(" %s", f.c_str());
            std::printf("\n");
        }
        if (data_stats > 0) {
            train::print_data_stats(o, data_stats);
            return 0;
        }
        if (!overlap_path.empty()) {
            const auto problems = countdown::load_problems(overlap_path);
            const auto seen = train::in_training_stream(o, problems, overlap_from);
            std::vector<countdown::Problem> held_out;
            for (size_t i = 0; i < problems.size(); ++i) {
                if (!seen[i] && (held_out_count <= 0 || static_cast<int>(held_out.size()) < held_out_count)) {
                    held_out.push_back(problems[i]);
                }
            }
            std::printf("%zu of %zu problems in %s occur in the training stream of steps %lld..%lld\n",
                        problems.size() - static_cast<size_t>(std::count(seen.begin(), seen.end(), false)),
                        problems.size(), overlap_path.c_str(), static_cast<long long>(overlap_from),
                        static_cast<long long>(o.steps - 1));
            for (size_t i = 0; i < problems.size(); ++i) {
                if (seen[i]) std::printf("  line %zu\n", i + 1);
            }
            if (!held_out_path.empty()) {
                countdown::save_problems(held_out_path, held_out);
                std::printf("wrote %zu held-out problems to %s\n", held_out.size(), held_out_path.c_str());
            }
            return 0;
        }
        if (o.out_dir.empty()) throw Error(ErrorCode::invalid_argument, "--out is required to train");
        const std::string path = train::train(o);
        std::printf("exported %s\n", path.c_str());
    } catch (const Error & e) {
        std::fprintf(stderr, "forkjoin-train: %s\n", e.what());
        return 1;
    } catch (const c10::Error & e) {
        std::fprintf(stderr, "forkjoin-train: torch: %s\n", e.what_without_backtrace());
        return 1;
    }
    return 0;
}
