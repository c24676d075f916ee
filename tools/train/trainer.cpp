#include "tools/train/trainer.h"

#include "backends/llama/backend.h"
#include "base/cpu_share.h"
#include "base/error.h"
#include "base/random.h"
#include "strategies/countdown.h"
#include "tools/gguf/llama_gguf_reader.h"
#include "tools/train/countdown_vocabulary.h"
#include "tools/train/training_data.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace forkjoin::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double learning_rate(const TrainOptions & o, int64_t step) {
    step -= std::min(step, o.schedule_start);
    const int64_t steps = std::max<int64_t>(1, o.steps - o.schedule_start);
    if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
    const double progress = static_cast<double>(step - o.warmup) / static_cast<double>(std::max<int64_t>(1, steps - o.warmup));
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * std::min(1.0, progress)));
}

namespace {

// "count:min:max" with count N or N-M: the kinds of problem it names, smallest count first; empty
// when it is not of that form.
std::vector<countdown::GeneratorOptions> parse_problem_kinds(const std::string & text) {
    char count[32] = {0};
    countdown::GeneratorOptions g;
    int consumed = 0;
    if (std::sscanf(text.c_str(), "%31[0-9-]:%d:%d%n", count, &g.min_number, &g.max_number, &consumed) != 3 ||
        static_cast<size_t>(consumed) != text.size() || g.min_number > g.max_number) {
        return {};
    }
    int first = 0, last = 0, used = 0;
    if (std::sscanf(count, "%d-%d%n", &first, &last, &used) == 2 && count[used] == 0) {
        if (first < 1 || last <= first) return {};
    } else if (std::sscanf(count, "%d%n", &first, &used) == 1 && count[used] == 0) {
        if (first < 1) return {};
        last = first;
    } else {
        return {};
    }
    std::vector<countdown::GeneratorOptions> kinds;
    for (int c = first; c <= last; ++c) {
        kinds.push_back(g);
        kinds.back().count = c;
    }
    return kinds;
}

}  // namespace

std::vector<Stage> parse_curriculum(const std::string & text) {
    std::vector<Stage> stages;
    std::stringstream ss(text);
    std::string stage;
    while (std::getline(ss, stage, ',')) {
        Stage s;
        const size_t colon = stage.find(':');
        int used = 0;
        bool ok = colon != std::string::npos &&
                  std::sscanf(stage.substr(0, colon).c_str(), "%" SCNd64 "%n", &s.from_step, &used) == 1 &&
                  static_cast<size_t>(used) == colon;
        std::stringstream parts(ok ? stage.substr(colon + 1) : std::string());
        std::string part;
        for (bool first = true; ok && std::getline(parts, part, '+'); first = false) {
            const auto kinds = parse_problem_kinds(part);
            ok = !kinds.empty();
            if (!ok) break;
            if (first) {
                s.problems = kinds.front();
                if (kinds.size() > 1) s.max_count = kinds.back().count;
            } else {
                s.more.insert(s.more.end(), kinds.begin(), kinds.end());
            }
        }
        ok = ok && s.problems.count >= 1 && !stage.ends_with("+");
        // stage_at takes the last stage that has begun: stages out of order would silently skip some.
        ok = ok && (stages.empty() || s.from_step > stages.back().from_step);
        if (!ok) {
            throw Error(ErrorCode::invalid_argument,
                        "bad curriculum stage '" + stage +
                            "' (from_step:count:min:max with count N or N-M, then optionally +count:min:max parts; steps increasing)");
        }
        stages.push_back(s);
    }
    return stages;
}

namespace {

const Stage & stage_at(const TrainOptions & o, int64_t step) {
    static const Stage fallback;
    const Stage * current = &fallback;
    for (const auto & s : o.curriculum) {
        if (step >= s.from_step) current = &s;
    }
    return *current;
}

// The kinds of problem a stage draws, in turn: its sizes smallest first (one for a single-size
// stage), then its `more`.
std::vector<countdown::GeneratorOptions> stage_sizes(const Stage & stage) {
    std::vector<countdown::GeneratorOptions> sizes;
    for (int count = stage.problems.count; count <= std::max(stage.problems.count, stage.max_count); ++count) {
        sizes.push_back(stage.problems);
        sizes.back().count = count;
    }
    sizes.insert(sizes.end(), stage.more.begin(), stage.more.end());
    return sizes;
}

// The problems of a stage from one seed: one generator per size, taken in turn. A stage of one size
// draws exactly what a single generator from `seed` draws, so adding mixed stages left the stream of
// every earlier run (and its held-out checks) unchanged.
class StageProblems {
public:
    StageProblems(uint64_t seed, const Stage & stage) {
        uint64_t k = 0;
        for (const auto & size : stage_sizes(stage)) generators_.emplace_back(seed + k++ * 0x9E3779B97F4A7C15ull, size);
    }
    countdown::Problem next() { return generators_[next_++ % generators_.size()].next(); }

private:
    std::vector<countdown::ProblemGenerator> generators_;
    size_t next_ = 0;
};

// The batch for a step depends only on (seed, step), the held-out problems and the examples given: a
// resumed run sees the same data stream (state.json names the held-out set; a resume warns when it
// changed). A held-out problem is skipped and the generator's next one drawn in its place, which also
// moves a mixed stage's turn on by one kind. `own` (the model's verified examples, --traces) fills about o.traces_share of the
// tokens, drawn with replacement; the symbolic stream the rest. `problems`, when given, receives the
// problems the symbolic examples were written from.
std::vector<Example> batch_for(const TrainOptions & o, int64_t step, const llama::Model & tok,
                               std::vector<countdown::Problem> * problems = nullptr, const std::vector<Example> * own = nullptr) {
    StageProblems gen(o.seed * 1000003ull + static_cast<uint64_t>(step), stage_at(o, step));
    std::vector<Example> out;
    int64_t tokens = 0;
    if (own && !own->empty()) {
        SplitMix64 pick(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xD1B54A32D192ED03ull);
        const double own_tokens = std::clamp(o.traces_share, 0.0, 1.0) * static_cast<double>(o.batch_tokens);
        while (static_cast<double>(tokens) < own_tokens) {
            const Example & ex = (*own)[pick.next() % own->size()];
            tokens += static_cast<int64_t>(ex.tokens.size());
            out.push_back(ex);
        }
    }
    for (uint64_t i = 0; tokens < o.batch_tokens; ++i) {
        countdown::Problem p = gen.next();
        while (o.held_out.contains(countdown::key_of(p))) p = gen.next();
        if (problems) problems->push_back(p);
        // Alternate modes deterministically by problem index.
        const bool parallel = static_cast<double>((step * 7919 + static_cast<int64_t>(i)) % 1000) < o.parallel_share * 1000.0;
        countdown::SearchOptions search = o.search;
        search.seed = o.seed ^ (static_cast<uint64_t>(step) << 20) ^ i;
        for (auto & ex : make_examples(p, parallel, search, tok)) {
            if (static_cast<int64_t>(ex.tokens.size()) > o.model.n_ctx) continue;  // too long to train on
            tokens += static_cast<int64_t>(ex.tokens.size());
            out.push_back(std::move(ex));
        }
    }
    return out;
}

}  // namespace

std::vector<Example> training_batch(const TrainOptions & o, int64_t step, const llama::Model & tok, const std::vector<Example> & own) {
    return batch_for(o, step, tok, nullptr, &own);
}

namespace {

// Splits a batch into groups of examples of similar length (shortest first, stable), each at most
// `padded_tokens` once padded to its longest (a longer example goes alone).
std::vector<std::vector<Example>> length_groups(const std::vector<Example> & batch, int64_t padded_tokens) {
    std::vector<size_t> order(batch.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return batch[a].tokens.size() < batch[b].tokens.size(); });
    std::vector<std::vector<Example>> groups;
    for (size_t i : order) {
        const auto len = static_cast<int64_t>(batch[i].tokens.size());  // the longest so far: sorted
        if (groups.empty() || static_cast<int64_t>(groups.back().size() + 1) * len > padded_tokens) groups.emplace_back();
        groups.back().push_back(batch[i]);
    }
    return groups;
}

std::pair<torch::Tensor, torch::Tensor> collate(const std::vector<Example> & batch) {
    size_t T = 0;
    for (const auto & e : batch) T = std::max(T, e.tokens.size());
    const auto B = static_cast<int64_t>(batch.size());
    auto tokens = torch::full({B, static_cast<int64_t>(T)}, kEosId, torch::kInt64);
    auto weights = torch::zeros({B, static_cast<int64_t>(T)}, torch::kFloat32);
    for (int64_t b = 0; b < B; ++b) {
        const auto & e = batch[static_cast<size_t>(b)];
        auto tk = tokens[b];
        auto w = weights[b];
        for (size_t i = 0; i < e.tokens.size(); ++i) {
            tk[static_cast<int64_t>(i)] = e.tokens[i];
            w[static_cast<int64_t>(i)] = static_cast<float>(e.in_loss[i]);
        }
    }
    return {tokens, weights};
}

// The symbolic stream skips the held-out problems, so it depends on them as well as on (seed, step):
// the state names them by a digest (FNV-1a over the sorted keys) so that a resume can say when they
// changed.
std::string held_out_digest(const std::set<countdown::ProblemKey> & held_out) {
    uint64_t h = 1469598103934665603ull;
    const auto mix = [&](int64_t v) {
        for (int b = 0; b < 8; ++b) {
            h ^= static_cast<uint64_t>(v >> (8 * b)) & 0xffu;
            h *= 1099511628211ull;
        }
    };
    for (const auto & [nums, target] : held_out) {
        mix(static_cast<int64_t>(nums.size()));
        for (int n : nums) mix(n);
        mix(target);
    }
    char out[32];
    std::snprintf(out, sizeof out, "%zu:%016llx", held_out.size(), static_cast<unsigned long long>(h));
    return out;
}

void write_state(const fs::path & path, int64_t step, uint64_t seed, const std::string & held_out) {
    std::ofstream(path) << nlohmann::json{{"step", step}, {"seed", seed}, {"held_out", held_out}}.dump() << "\n";
}

std::vector<countdown::Problem> eval_set(const TrainOptions & o, int64_t step) {
    // Held out: a seed space the training stream never uses.
    StageProblems gen(0xE7A1ull ^ (o.seed << 32), stage_at(o, step));
    std::vector<countdown::Problem> out;
    for (int i = 0; i < o.eval_problems; ++i) out.push_back(gen.next());
    return out;
}

}  // namespace

EvalResult evaluate_sequential(const std::string & gguf_path, const std::vector<countdown::Problem> & problems,
                               int max_tokens) {
    // The engine's own Countdown runner, so training-time numbers are the numbers the CLI reports.
    auto model = llama::Model::load(gguf_path);
    llama::BackendOptions bo;
    bo.n_seq_max = 32;
    bo.n_ctx = static_cast<uint32_t>(bo.n_seq_max * (max_tokens + 64));
    llama::LlamaBackend backend(model, bo);
    strategies::CountdownOptions o;
    o.strategy = strategies::CountdownStrategy::sequential;
    o.style = countdown::PromptStyle::forkjoin;
    o.limits.thread_token_budget = max_tokens;
    o.concurrent_requests = static_cast<int>(bo.n_seq_max);
    EvalResult r;
    r.problems = static_cast<int>(problems.size());
    int64_t generated = 0;
    for (const auto & out : strategies::run_countdown(backend, problems, o)) {
        r.solved += out.solved;
        generated += out.metrics.generated_tokens;
    }
    r.mean_tokens = problems.empty() ? 0.0 : static_cast<double>(generated) / static_cast<double>(problems.size());
    return r;
}

namespace {

// llama.cpp's tokenizer for the Countdown vocabulary without a trained model: a one-layer GGUF
// loaded vocabulary-only (tokenization never touches the weights).
std::shared_ptr<const llama::Model> vocabulary_tokenizer(const TrainOptions & o) {
    const fs::path tmp = fs::temp_directory_path() / "forkjoin-vocab-stats.gguf";
    LlamaConfig cfg = o.model;
    const gguf::Vocabulary vocab = countdown_vocabulary();
    cfg.n_vocab = static_cast<int64_t>(vocab.tokens.size());
    cfg.n_layer = 1;
    cfg.n_embd = cfg.n_head * 2;
    LlamaTorch tiny(cfg);
    gguf::write_llama_gguf(tmp.string(), cfg.hparams(), vocab, tiny->export_weights());
    return llama::Model::load(tmp.string(), true);
}

}  // namespace

std::vector<bool> in_training_stream(const TrainOptions & o, const std::vector<countdown::Problem> & problems,
                                     int64_t from_step) {
    // A problem is its multiset of numbers and its target: the order of the numbers is not a new problem.
    const auto key = countdown::key_of;
    std::set<countdown::ProblemKey> wanted, seen;
    for (const auto & p : problems) wanted.insert(key(p));
    const auto tok = vocabulary_tokenizer(o);
    for (int64_t step = from_step; step < o.steps; ++step) {
        std::vector<countdown::Problem> used;
        batch_for(o, step, *tok, &used);
        for (const auto & p : used) {
            if (wanted.count(key(p))) seen.insert(key(p));
        }
    }
    std::vector<bool> out;
    for (const auto & p : problems) out.push_back(seen.count(key(p)) > 0);
    return out;
}

void print_data_stats(const TrainOptions & o, int n_problems) {
    const auto tok = vocabulary_tokenizer(o);
    // One line per problem size and mode: a mixed stage's sizes have very different traces.
    std::vector<countdown::GeneratorOptions> sizes;
    for (const auto & stage : o.curriculum.empty() ? std::vector<Stage>{Stage{}} : o.curriculum) {
        const auto more = stage_sizes(stage);
        sizes.insert(sizes.end(), more.begin(), more.end());
    }
    for (const auto & size : sizes) {
        for (bool parallel : {false, true}) {
            countdown::ProblemGenerator gen(o.seed, size);
            int64_t bytes = 0, tokens = 0, longest_thread = 0, longest_total = 0, threads = 0, solved = 0;
            std::vector<int64_t> per_problem;
            for (int i = 0; i < n_problems; ++i) {
                const auto p = gen.next();
                countdown::SearchOptions search = o.search;
                search.seed = static_cast<uint64_t>(i);
                search.parallel = parallel;
                solved += countdown::write_search_trace(p, search).solved;
                int64_t total = 0;
                for (const auto & ex : make_examples(p, parallel, search, *tok)) {
                    const auto n = static_cast<int64_t>(ex.tokens.size());
                    tokens += n;
                    total += n;
                    longest_thread = std::max(longest_thread, n);
                    ++threads;
                }
                per_problem.push_back(total);
                longest_total = std::max(longest_total, total);
                (void)bytes;
            }
            std::sort(per_problem.begin(), per_problem.end());
            std::printf("%d numbers in %d..%d, %-10s: search solves %5.1f%%, %.1f threads/problem, %.0f tokens/problem "
                        "(median %lld, max %lld), longest thread %lld tokens\n",
                        size.count, size.min_number, size.max_number,
                        parallel ? "parallel" : "sequential", 100.0 * static_cast<double>(solved) / n_problems,
                        static_cast<double>(threads) / n_problems, static_cast<double>(tokens) / n_problems,
                        static_cast<long long>(per_problem[per_problem.size() / 2]), static_cast<long long>(longest_total),
                        static_cast<long long>(longest_thread));
        }
    }
}

std::string train(const TrainOptions & o) {
    if (o.out_dir.empty()) throw Error(ErrorCode::invalid_argument, "train: an output directory is required");
    fs::create_directories(o.out_dir);
    // Default: the cores other processes leave free now (LibTorch's pool cannot resize as it runs).
    int threads = requested_threads(o.threads);
    if (threads <= 0) threads = CpuShare().measure(std::chrono::milliseconds(300));
    torch::set_num_threads(threads);
    torch::manual_seed(o.seed);

    LlamaConfig cfg = o.model;
    const gguf::Vocabulary vocab = countdown_vocabulary();
    cfg.n_vocab = static_cast<int64_t>(vocab.tokens.size());
    std::optional<gguf::LlamaFile> init;
    if (!o.init_from.empty()) {
        init = gguf::read_llama_gguf(o.init_from);
        const gguf::LlamaHyperparams & hp = init->hparams;
        if (hp.n_vocab != cfg.n_vocab) {
            throw Error(ErrorCode::invalid_argument, o.init_from + ": a vocabulary of " + std::to_string(hp.n_vocab) +
                                                         " tokens, the Countdown vocabulary has " + std::to_string(cfg.n_vocab));
        }
        if (hp.n_head_kv != hp.n_head) {
            throw Error(ErrorCode::invalid_argument, o.init_from + ": " + std::to_string(hp.n_head_kv) + " K/V heads for " +
                                                         std::to_string(hp.n_head) + " query heads; the trainer's model has one per query head");
        }
        // The file's shape, not the command's: --embd, --layers, --heads and --ff do not apply.
        cfg.n_embd = hp.n_embd;
        cfg.n_layer = hp.n_layer;
        cfg.n_head = hp.n_head;
        cfg.n_ff = hp.n_ff;
        cfg.rms_eps = hp.rms_eps;
        cfg.rope_base = hp.rope_freq_base;
    }
    LlamaTorch model(cfg);
    if (init) {
        model->import_weights(init->weights);
        init.reset();
    } else {
        model->init_weights();
    }
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay));

    const fs::path dir(o.out_dir), state = dir / "state.json", weights = dir / "model.pt", optim = dir / "optim.pt";
    const fs::path export_path = dir / "model.gguf";
    int64_t step = 0;
    const std::string held_out_id = held_out_digest(o.held_out);  // what state.json records of them
    if (fs::exists(state)) {
        std::ifstream in(state);
        const auto j = nlohmann::json::parse(in);
        step = j.at("step").get<int64_t>();
        const std::string before = j.value("held_out", std::string("0:none recorded"));
        if (before != held_out_id) {
            std::printf("warning: the held-out problems differ from the run's so far (%s, now %s): the symbolic stream "
                        "from here on is not the one the same command drew before\n",
                        before.c_str(), held_out_id.c_str());
        }
        torch::load(model, weights.string());
        torch::load(opt, optim.string());
        std::printf("resuming %s at step %lld\n", o.out_dir.c_str(), static_cast<long long>(step));
    }
    auto export_gguf = [&](const fs::path & path) {
        gguf::GgufMetadata meta;
        meta.name = "forkjoin-countdown";
        meta.strings.push_back({"forkjoin.train.step", std::to_string(step)});
        meta.strings.push_back({"forkjoin.train.seed", std::to_string(o.seed)});
        gguf::write_llama_gguf(path.string() + ".tmp", cfg.hparams(), vocab, model->export_weights(), gguf::WeightType::f32, meta);
        fs::rename(path.string() + ".tmp", path);
    };
    export_gguf(export_path);  // tokenization goes through llama.cpp with this file's vocabulary
    const auto tokenizer = llama::Model::load(export_path.string(), /*vocab_only=*/true);
    std::vector<Example> own;
    if (!o.traces_path.empty()) {
        int64_t own_tokens = 0;
        size_t too_long = 0, held_out = 0;
        for (const auto & t : strategies::read_training_traces(o.traces_path)) {
            if (o.held_out.contains(countdown::key_of(t.problem))) {
                ++held_out;  // an eval problem: never trained on
                continue;
            }
            Example ex = example_from_trace(t, *tokenizer);
            if (static_cast<int64_t>(ex.tokens.size()) > o.model.n_ctx) {
                ++too_long;  // as the symbolic stream: too long to train on
                continue;
            }
            own_tokens += static_cast<int64_t>(ex.tokens.size());
            own.push_back(std::move(ex));
        }
        if (own.empty()) throw Error(ErrorCode::invalid_argument, o.traces_path + ": no example fits the training context (--ctx)");
        std::printf("%s: %zu examples, %lld tokens (%zu longer than --ctx, %zu of held-out problems left out); %.0f%% of each "
                    "batch's tokens\n",
                    o.traces_path.c_str(), own.size(), static_cast<long long>(own_tokens), too_long, held_out,
                    100.0 * std::clamp(o.traces_share, 0.0, 1.0));
    }

    std::ofstream log(dir / "train.log", std::ios::app);
    const auto t_start = Clock::now();
    const int64_t first = step;
    int64_t tokens_seen = 0;
    double loss_acc = 0;
    int loss_n = 0;
    for (; step < o.steps; ++step) {
        model->train();
        const auto batch = training_batch(o, step, *tokenizer, own);
        // Padding every example to the batch's longest wastes most of a step once lengths vary
        // (4-number sequential traces ~1,800 tokens beside ~150-token children): examples of
        // similar length go through together, gradients accumulate, and the loss is still the
        // batch's weighted mean.
        double weight_total = 0;
        for (const auto & e : batch) {
            for (auto m : e.in_loss) weight_total += m;
            tokens_seen += static_cast<int64_t>(e.tokens.size());
        }
        opt.zero_grad();
        double loss_value = 0;
        for (const auto & group : length_groups(batch, std::max<int64_t>(2048, o.batch_tokens / 4))) {
            auto [tokens, w] = collate(group);
            auto logits = model->forward(tokens.slice(1, 0, tokens.size(1) - 1));
            auto targets = tokens.slice(1, 1);
            auto weight = w.slice(1, 1);
            auto nll = torch::nn::functional::cross_entropy(
                logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
            auto loss = (nll * weight.reshape({-1})).sum() / std::max(1.0, weight_total);
            loss.backward();
            loss_value += loss.item<double>();
        }
        for (auto & g : opt.param_groups()) static_cast<torch::optim::AdamWOptions &>(g.options()).lr(learning_rate(o, step));
        torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
        opt.step();
        if (o.on_step) o.on_step(step, loss_value);
        loss_acc += loss_value;
        ++loss_n;

        const int64_t done = step + 1;
        if (done % o.log_every == 0 || done == o.steps) {
            const double secs = std::chrono::duration<double>(Clock::now() - t_start).count();
            const double tps = static_cast<double>(tokens_seen) / secs;
            const double eta = secs / static_cast<double>(done - first) * static_cast<double>(o.steps - done);
            char line[256];
            std::snprintf(line, sizeof line, "step %lld/%lld loss %.4f lr %.2e %.0f tok/s elapsed %.0fs eta %.0fs",
                          static_cast<long long>(done), static_cast<long long>(o.steps), loss_acc / loss_n,
                          learning_rate(o, step), tps, secs, eta);
            std::printf("%s\n", line);
            std::fflush(stdout);
            log << line << "\n" << std::flush;
            loss_acc = 0;
            loss_n = 0;
        }
        if (done % o.checkpoint_every == 0 || done == o.steps) {
            torch::save(model, weights.string());
            torch::save(opt, optim.string());
            write_state(state, done, o.seed, held_out_id);
            export_gguf(export_path);
        }
        if (o.eval_every > 0 && (done % o.eval_every == 0 || done == o.steps)) {
            export_gguf(export_path);
            const auto r = evaluate_sequential(export_path.string(), eval_set(o, step), o.eval_max_tokens);
            char line[256];
            std::snprintf(line, sizeof line, "eval step %lld: sequential solve rate %.1f%% (%d/%d), %.0f tokens/problem",
                          static_cast<long long>(done), 100.0 * r.solve_rate(), r.solved, r.problems, r.mean_tokens);
            std::printf("%s\n", line);
            std::fflush(stdout);
            log << line << "\n" << std::flush;
        }
    }
    export_gguf(export_path);
    return export_path.string();
}

}  // namespace forkjoin::train
