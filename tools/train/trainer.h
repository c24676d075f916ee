// Trains the Countdown model: curriculum, AdamW with warmup and cosine decay, checkpoints that
// resume, progress lines, and periodic evaluation of the solve rate through llama.cpp itself.
#pragma once

#include "tasks/countdown/search_trace.h"
#include "tasks/countdown/solver.h"
#include "tools/train/llama_torch.h"
#include "tools/train/training_data.h"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace forkjoin::train {

// A curriculum stage: from step `from_step` on, problems come from `problems`. With `max_count` above
// problems.count the stage mixes sizes: the step's problems take the sizes count..max_count in turn
// (then the kinds of `more`), so a stage that adds a size can keep the smaller ones it would otherwise
// forget; a held-out problem skipped moves the turn on. `more`
// adds other kinds to the turn (e.g. 3 numbers from 1..20 beside 3 and 4 from 1..99: a model trained
// only on large numbers forgets the small ones its first stage taught).
struct Stage {
    int64_t from_step = 0;
    countdown::GeneratorOptions problems;
    int max_count = 0;  // 0: problems.count only
    std::vector<countdown::GeneratorOptions> more;
};

// Parses --curriculum: comma-separated stages from_step:count:min_number:max_number, where count is
// N or N-M (a mixed stage), optionally followed by +count:min_number:max_number parts drawn in turn
// with it (count N or N-M); from_step increases. Throws invalid_argument naming the bad stage.
std::vector<Stage> parse_curriculum(const std::string & text);

struct TrainOptions {
    std::string out_dir;              // checkpoints, exports and the log live here
    uint64_t seed = 1;
    int64_t steps = 20000;
    int64_t batch_tokens = 8192;      // tokens per optimizer step (whole examples, padded)
    double lr = 1e-3;
    double min_lr = 1e-4;
    int64_t warmup = 200;
    // Warmup and cosine decay run over [schedule_start, steps): a run resumed into a new stage
    // (e.g. 4 numbers after 3) gets its own warmup and a decay that ends when it does.
    int64_t schedule_start = 0;
    double weight_decay = 0.05;
    double parallel_share = 0.5;      // fraction of problems written in parallel mode
    // Expert iteration: the model's own verified examples (forkjoin generate traces, JSONL of
    // strategies/countdown_traces.h), drawn to fill `traces_share` of each batch's tokens; the
    // symbolic stream fills the rest. Empty: symbolic data only.
    std::string traces_path;
    double traces_share = 0.5;
    // Start from this GGUF's weights (e.g. the shipped model) instead of random ones; its shape
    // replaces model's n_embd, n_layer, n_head and n_ff (n_ctx stays). A run that resumes from its
    // checkpoint reads only the shape. Empty: random init.
    std::string init_from;
    // Problems never trained on (the eval sets: countdown/held_out.h): the symbolic stream draws
    // the next problem in their place, and examples of --traces on them are dropped.
    std::set<countdown::ProblemKey> held_out;
    countdown::SearchOptions search;  // beam sizes of the traces
    std::vector<Stage> curriculum;
    LlamaConfig model;
    int64_t log_every = 20;
    int64_t checkpoint_every = 200;
    int64_t eval_every = 500;         // 0: never
    int eval_problems = 100;
    int eval_max_tokens = 1024;
    int threads = 0;                  // 0: FORKJOIN_THREADS, else the cores free at start (base/cpu_share.h)
    std::function<void(int64_t step, double loss)> on_step;  // called after every optimizer step
};

struct EvalResult {
    int problems = 0;
    int solved = 0;                   // verified by the strict verifier
    double mean_tokens = 0;
    double solve_rate() const { return problems ? static_cast<double>(solved) / problems : 0.0; }
};

// The learning rate at `step`: linear warmup over `warmup` steps from `schedule_start`, then cosine
// decay to `min_lr` at `steps`.
double learning_rate(const TrainOptions & options, int64_t step);

// Greedy sequential-mode evaluation of a GGUF on `problems` through llama.cpp.
EvalResult evaluate_sequential(const std::string & gguf_path, const std::vector<countdown::Problem> & problems,
                               int max_tokens);

// Token counts of the training examples `options` would produce for n problems of each curriculum
// stage, by mode: what decides whether APR's verbose format fits the context and the CPU budget.
void print_data_stats(const TrainOptions & options, int n_problems);

// For each of `problems`: does the training stream of `options` contain it (numbers as a multiset,
// and target) in steps [from_step, options.steps)? The held-out claim of an evaluation set, checked.
std::vector<bool> in_training_stream(const TrainOptions & options, const std::vector<countdown::Problem> & problems,
                                     int64_t from_step = 0);

// The examples of step `step`'s batch as train() draws them: the symbolic stream, with `own` (the
// model's verified examples, tokenized by example_from_trace) filling about options.traces_share of
// the tokens when not empty. A function of (options, step, own) only.
std::vector<Example> training_batch(const TrainOptions & options, int64_t step, const llama::Model & tokenizer,
                                    const std::vector<Example> & own = {});

// Runs (or resumes) training; returns the path of the exported GGUF. With traces_path, a file
// whose examples are all longer than the model's context is refused (Error invalid_argument).
std::string train(const TrainOptions & options);

}  // namespace forkjoin::train
