// The dialects whose children fork the parent's context: multiverse, threadweaver, npr and
// parallel-r1 differ only in their tags and in what their engines do around a block, so one parser
// reads a spec. Each spec follows its upstream engine's code:
//   multiverse   Infini-AI-Lab/Multiverse, engine submodule Multiverse-Engine b3ed243:
//                sglang/srt/managers/schedule_batch.py (Req.check_finished, ScheduleBatch.filter_batch),
//                managers/scheduler.py (merge_zombie_batch_to_run); tags: train/utils.py
//                add_and_init_special_tokens
//   npr          bigai-nlco/Native-Parallel-Reasoner e148ad5, npr-rl/.../sglang/srt/managers/
//                schedule_batch.py (check_finished, filter_batch), scheduler.py
//                (merge_zombie_batch_to_run); tags: npr-beta/train/utils.py
//   threadweaver facebookresearch/threadweaver 2662232, threadweaver_rl/verl/experimental/agent_loop/
//                single_turn_agent_loop.py (ParallelBranchingController: _parallel_step, the join);
//                tags: threadweaver_sft/src/utils.py
//   parallel-r1  zhengkid/Parallel-R1 7c3a8f3, verl/verl/parallel_thinking_generation_v3/
//                parallel_thinking_loop_v3.py (_call_parallel_thinking, run)
#include "dialects/dialect.h"

namespace forkjoin::dialects {
namespace {

struct BlockSpec {
    BlockSpec(std::string name_, std::string open_, std::string close_, std::string item_open_, std::string item_close_,
              std::string seed_, std::string child_end_, int fixed_width_ = 0)
        : name(std::move(name_)), open(std::move(open_)), close(std::move(close_)), item_open(std::move(item_open_)),
          item_close(std::move(item_close_)), seed(std::move(seed_)), child_end(std::move(child_end_)), fixed_width(fixed_width_) {}
    std::string name;
    std::string open;        // opens the block that plans the children ("<Goal>"); empty: no plan
    std::string close;       // the spawn point ("</Goal>"); the children fork right after it
    std::string item_open;   // one child per item in the plan ("<Outline>")
    std::string item_close;  // "</Outline>"
    std::string seed;        // a child's first text; "{label}" is replaced by the item's label
    std::string child_end;   // a child's part ends at this tag ("</Path>")
    int fixed_width = 0;     // no plan: this many children at the spawn point
    int tokens_after_end = 0;  // the child's part ends this many tokens after child_end (kept)
    JoinKind join = JoinKind::kv_shared_start;
    std::string later_drop;  // SpawnRequest::later_drop
    std::string inserted;    // SpawnRequest::inserted
    bool close_cut_children = false;        // SpawnRequest::close_cut is child_end
    std::vector<std::string> added_tokens;  // Dialect::added_tokens
    int max_depth = 1;                      // Dialect::default_max_depth
    int fork_headroom = 0;                  // Dialect::fork_headroom
    // The format's own limits, as the upstream engine applies them:
    enum class EmptyPlan { malformed, in_line, end } empty_plan = EmptyPlan::malformed;  // a plan with no items
    size_t max_items = 0;    // more items than this: the thread ends there (0: no cap)
    int max_blocks = 0;      // after this many joins the thread ends at block_end_tag (0: no cap)
    std::string block_end_tag;
};

// Finds `tag` in the text fed since `scanned` (it may span pieces).
size_t find_new(const std::string & text, size_t scanned, const std::string & tag) {
    const size_t from = scanned >= tag.size() ? scanned - tag.size() + 1 : 0;
    return text.find(tag, from);
}

// Labels come from the model's plan; one that could spell a control token ("<s>") is not used
// where the seed is tokenized with special-token parsing.
bool safe_label(std::string_view label) {
    return !label.empty() && label.find_first_of("<>") == std::string_view::npos;
}

std::string seed_for(const BlockSpec & spec, const std::string & label) {
    std::string s = spec.seed;
    const size_t at = s.find("{label}");
    if (at != std::string::npos) s.replace(at, 7, label);
    return s;
}

class BlockParser : public ThreadParser {
public:
    BlockParser(const BlockSpec & spec, std::string context, bool is_child) : spec_(spec), is_child_(is_child) {
        text_ = std::move(context);
        scanned_ = prompt_size_ = text_.size();
        if (spec_.max_blocks > 0 && !is_child_ && !spec_.inserted.empty()) {
            // A parser starts afresh after each join: the blocks joined so far are the engine's
            // inserted text in the context.
            int blocks = 0;
            for (size_t at = text_.find(spec_.inserted); at != std::string::npos; at = text_.find(spec_.inserted, at + 1)) ++blocks;
            blocks_done_ = blocks >= spec_.max_blocks;
        }
    }

    std::optional<Event> feed(std::string_view piece) override {
        const size_t scanned = scanned_;
        text_.append(piece);
        scanned_ = text_.size();
        if (ending_ > 0) {  // the child's closing tag came; it keeps a few more tokens (pieces)
            if (--ending_ == 0) return Event{EventKind::end, {}, {}};
            return std::nullopt;
        }
        if (blocks_done_) {
            // Past the format's last block the thread only writes its summary, then ends.
            if (find_new(text_, scanned, spec_.block_end_tag) != std::string::npos) return Event{EventKind::end, {}, {}};
            return std::nullopt;
        }
        const size_t spawn_at = find_new(text_, scanned, spec_.close);
        const size_t end_at = is_child_ ? find_new(text_, scanned, spec_.child_end) : std::string::npos;
        if (end_at != std::string::npos && (spawn_at == std::string::npos || end_at < spawn_at)) {
            if (spec_.tokens_after_end == 0) return Event{EventKind::end, {}, {}};
            ending_ = spec_.tokens_after_end;
            return std::nullopt;
        }
        if (spawn_at == std::string::npos) return std::nullopt;
        // The fork point is the end of the token that completed the tag: text and KV agree there.
        SpawnRequest spawn;
        spawn.join = spec_.join;
        spawn.later_drop = spec_.later_drop;
        spawn.inserted = spec_.inserted;
        if (spec_.close_cut_children) spawn.close_cut = spec_.child_end;
        spawn.block_begin = spawn.block_end = text_.size();
        if (spec_.fixed_width > 0) {
            for (int i = 1; i <= spec_.fixed_width; ++i) add_child(spawn, std::to_string(i));
            return Event{EventKind::spawn, std::move(spawn), {}};
        }
        const size_t open = text_.rfind(spec_.open, spawn_at);
        if (open == std::string::npos || open < prompt_size_) {
            return malformed(spec_.close + " without a " + spec_.open + " this thread wrote");
        }
        const std::string_view plan = std::string_view(text_).substr(open, spawn_at - open);
        for (size_t at = plan.find(spec_.item_open); at != std::string_view::npos; at = plan.find(spec_.item_open, at + 1)) {
            const size_t body = at + spec_.item_open.size();
            const size_t close = plan.find(spec_.item_close, body);
            if (close == std::string_view::npos) return malformed("a " + spec_.item_open + " in the plan is not closed");
            std::string_view item = plan.substr(body, close - body);
            while (!item.empty() && (item.front() == '\n' || item.front() == ' ')) item.remove_prefix(1);
            // The engines number a child by its plan item ("1", "1.2"), else by its place.
            const size_t colon = item.find(':');
            std::string_view label = colon != std::string_view::npos && colon <= 8 ? item.substr(0, colon) : std::string_view();
            while (!label.empty() && label.back() == ' ') label.remove_suffix(1);
            add_child(spawn, safe_label(label) ? std::string(label) : std::to_string(spawn.children.size() + 1));
        }
        if (spawn.children.empty()) {
            switch (spec_.empty_plan) {
                case BlockSpec::EmptyPlan::in_line: return std::nullopt;  // no child: the thread goes on
                case BlockSpec::EmptyPlan::end: return Event{EventKind::end, {}, {}};
                case BlockSpec::EmptyPlan::malformed: break;
            }
            return malformed("a plan with no " + spec_.item_open);
        }
        if (spec_.max_items > 0 && spawn.children.size() > spec_.max_items) return Event{EventKind::end, {}, {}};
        return Event{EventKind::spawn, std::move(spawn), {}};
    }

private:
    static Event malformed(std::string reason) { return Event{EventKind::malformed, {}, std::move(reason)}; }
    void add_child(SpawnRequest & spawn, const std::string & label) const {
        ChildRequest child;
        child.forked = true;
        child.label = label;
        child.prompt = seed_for(spec_, label);
        spawn.children.push_back(std::move(child));
    }

    const BlockSpec & spec_;
    bool is_child_;
    int ending_ = 0;  // tokens the child still keeps after its closing tag
    bool blocks_done_ = false;  // the format's last block was joined
    size_t scanned_ = 0;
    size_t prompt_size_ = 0;
};

class BlockDialect : public Dialect {
public:
    explicit BlockDialect(BlockSpec spec) : spec_(std::move(spec)) {}
    std::string name() const override { return spec_.name; }
    std::vector<std::string> added_tokens() const override { return spec_.added_tokens; }
    int default_max_depth() const override { return spec_.max_depth; }
    int fork_headroom() const override { return spec_.fork_headroom; }
    std::unique_ptr<ThreadParser> parser(std::string prompt) const override {
        return std::make_unique<BlockParser>(spec_, std::move(prompt), false);
    }
    std::unique_ptr<ThreadParser> child_parser(std::string context, const ChildRequest &) const override {
        return std::make_unique<BlockParser>(spec_, std::move(context), true);
    }
    // After the join the parent's context holds each child's kept text, in order, then what the
    // engine inserts.
    std::string join(std::string_view parent, const SpawnRequest & spawn,
                     const std::vector<ChildResult> & results) const override {
        std::string out(parent.substr(0, spawn.block_end));
        for (const auto & r : results) out += r.text;
        return out + spawn.inserted;
    }

private:
    BlockSpec spec_;
};

}  // namespace

// Seeds, ends and inserted text as each engine builds them (see the sources at the top):
//   multiverse: child = prefix + encode("\n<Path>\n{n}") ... ends 2 tokens after </Path> and the
//     merge keeps output_ids[:-1] (</Path> and one token); paths after the first from start_path_idx
//     = len(prefix) + 1 (their "\n" left out); then encode("<Conclusion>\n").
//   npr: the same with "\n<step>\n{n}", </step> and "<takeaway>\n".
//   threadweaver: child = tokens + encode("\n<Thread>\n{n}:"), stops at </Thread> (kept); the merge
//     writes later threads as "<Thread>\n{n}:..."; then "\n" (no_conclusion, as train_par.slurm runs).
//   parallel-r1: child = prompt + [<Path>], stops at </Path> (kept); then </Parallel>, "\n", <Summary>.
// Multiverse's engine and NPR's (built on it) differ only in their tags: a block's children are
// seeded "\n{tag}\n{n}:", each ends one token after its closing tag, later children join without
// their "\n", all share their start position, and the engine then writes `inserted`.
static std::unique_ptr<Dialect> make_multiverse_engine_dialect(BlockSpec spec, std::string inserted,
                                                                std::vector<std::string> added_tokens, int fork_headroom) {
    spec.tokens_after_end = 1;
    spec.join = JoinKind::kv_shared_start;
    spec.later_drop = "\n";
    spec.inserted = std::move(inserted);
    spec.added_tokens = std::move(added_tokens);
    // filter_batch forks only while len(parent_start_path_idx_stack) <= 5: threads at depth 6 decode
    // their blocks in line.
    spec.max_depth = 6;
    // ... and only while right_most_pos - init_input_len < max_new_tokens - headroom.
    spec.fork_headroom = fork_headroom;
    return std::make_unique<BlockDialect>(std::move(spec));
}

std::unique_ptr<Dialect> make_multiverse_dialect() {
    return make_multiverse_engine_dialect(
        {"multiverse", "<Goal>", "</Goal>", "<Outline>", "</Outline>", "\n<Path>\n{label}:", "</Path>"}, "<Conclusion>\n",
        {"<Think>", "</Think>", "<Parallel>", "</Parallel>", "<Goal>", "</Goal>", "<Outline>", "</Outline>", "<Path>",
         "</Path>", "<Conclusion>", "</Conclusion>"},
        /*fork_headroom=*/30);
}

std::unique_ptr<Dialect> make_threadweaver_dialect() {
    BlockSpec spec{"threadweaver", "<Outlines>", "</Outlines>", "<Outline>", "</Outline>", "\n<Thread>\n{label}:", "</Thread>"};
    spec.join = JoinKind::reread;
    spec.later_drop = "\n";
    spec.inserted = "\n";
    spec.added_tokens = {"<Think>", "</Think>", "<Parallel>", "</Parallel>", "<Outlines>", "</Outlines>",
                         "<Outline>", "</Outline>", "<Thread>", "</Thread>", "<Conclusion>", "</Conclusion>"};
    spec.empty_plan = BlockSpec::EmptyPlan::in_line;  // no outline numbers: generation stays sequential
    return std::make_unique<BlockDialect>(std::move(spec));
}

std::unique_ptr<Dialect> make_npr_dialect() {
    BlockSpec spec{"npr", "<guideline>", "</guideline>", "<plan>", "</plan>", "\n<step>\n{label}:", "</step>"};
    // check_finished: a guideline with 0 or more than 5 plans finishes the request there.
    spec.empty_plan = BlockSpec::EmptyPlan::end;
    spec.max_items = 5;
    return make_multiverse_engine_dialect(std::move(spec), "<takeaway>\n",
        {"<guideline>", "</guideline>", "<plan>", "</plan>", "<step>", "</step>", "<takeaway>", "</takeaway>"},
        /*fork_headroom=*/1024);
}

std::unique_ptr<Dialect> make_parallel_r1_dialect(int width) {
    BlockSpec spec{"parallel-r1", "", "<Parallel>", "", "", "<Path>", "</Path>", std::max(1, width)};
    spec.join = JoinKind::reread;
    spec.inserted = "</Parallel>\n<Summary>";
    // _gen_single_path: a path that stopped at EOS has it replaced by </Path>, one cut at
    // max_path_response_length gets </Path> appended.
    spec.close_cut_children = true;
    // Its "-Special" checkpoints add these (README); the code takes encode(tag)[0].
    spec.added_tokens = {"<Parallel>", "</Parallel>", "<Path>", "</Path>", "<Summary>", "</Summary>"};
    // max_iterations_for_parallel_thinking = 4 in its training scripts: the rollout ends right after
    // the last block's </Summary>.
    spec.max_blocks = 4;
    spec.block_end_tag = "</Summary>";
    return std::make_unique<BlockDialect>(std::move(spec));
}

}  // namespace forkjoin::dialects
