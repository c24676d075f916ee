// gguf_check: forkjoin's reading of a GGUF's structure agrees with ggml's reader at the pinned commit
// (every file it passes, ggml reads; every structural fault it names, ggml refuses too), names what is
// wrong, and finds a truncated download that ggml's reader alone does not.
#include "backends/llama/gguf_check.h"

#include "tools/testmodel/test_model.h"

#include <ggml.h>
#include <gguf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

using namespace forkjoin;
using namespace forkjoin::llama;

namespace {

std::vector<uint8_t> read_file(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ggml's own reader over the same bytes (metadata only: no_alloc, so it never reads tensor data).
bool ggml_reads(const std::vector<uint8_t> & bytes) {
    ggml_log_set([](ggml_log_level, const char *, void *) {}, nullptr);  // its refusals are expected here
    gguf_context * ctx = gguf_init_from_buffer(bytes.data(), bytes.size(), {.no_alloc = true, .ctx = nullptr});
    ggml_log_set(nullptr, nullptr);
    if (!ctx) return false;
    gguf_free(ctx);
    return true;
}

// A GGUF written field by field, so each test can break one field.
struct GgufBuilder {
    std::vector<uint8_t> b;
    uint32_t version = 3;
    struct Tensor {
        std::string name;
        std::vector<int64_t> ne;
        uint32_t type;
        uint64_t nbytes;
        int64_t offset_shift = 0;  // added to the offset ggml expects
    };
    std::vector<std::vector<uint8_t>> kvs;
    std::vector<Tensor> tensors;
    uint64_t alignment = 32;
    int64_t cut_data = 0;  // bytes left off the end

    template <typename T> static void put(std::vector<uint8_t> & out, T v) {
        const auto * p = reinterpret_cast<const uint8_t *>(&v);
        out.insert(out.end(), p, p + sizeof v);
    }
    static void put_str(std::vector<uint8_t> & out, const std::string & s) {
        put<uint64_t>(out, s.size());
        out.insert(out.end(), s.begin(), s.end());
    }
    GgufBuilder & kv_u32(const std::string & key, uint32_t v) {
        std::vector<uint8_t> e;
        put_str(e, key);
        put<uint32_t>(e, 4);
        put<uint32_t>(e, v);
        kvs.push_back(e);
        return *this;
    }
    GgufBuilder & kv_str(const std::string & key, const std::string & v) {
        std::vector<uint8_t> e;
        put_str(e, key);
        put<uint32_t>(e, 8);
        put_str(e, v);
        kvs.push_back(e);
        return *this;
    }
    GgufBuilder & kv_raw(const std::vector<uint8_t> & e) {
        kvs.push_back(e);
        return *this;
    }
    GgufBuilder & tensor(const std::string & name, std::vector<int64_t> ne, uint32_t type = 0 /* f32 */) {
        // Data only for a shape the check accepts (a broken one is refused before its data matters).
        const auto & t = ggml_types()[type];
        uint64_t n = 1;
        bool valid = t.block > 0 && !ne.empty() && ne[0] % t.block == 0;
        for (auto x : ne) {
            valid = valid && x >= 0 && x < (1 << 20);
            n *= valid ? static_cast<uint64_t>(x) : 0;
        }
        tensors.push_back({name, ne, type, valid ? n / static_cast<uint64_t>(t.block) * t.bytes : 0});
        return *this;
    }
    std::vector<uint8_t> build() const {
        std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
        put<uint32_t>(out, version);
        put<int64_t>(out, static_cast<int64_t>(tensors.size()));
        put<int64_t>(out, static_cast<int64_t>(kvs.size()));
        for (const auto & e : kvs) out.insert(out.end(), e.begin(), e.end());
        uint64_t offset = 0;
        for (const auto & t : tensors) {
            put_str(out, t.name);
            put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
            for (auto x : t.ne) put<int64_t>(out, x);
            put<uint32_t>(out, t.type);
            put<uint64_t>(out, offset + static_cast<uint64_t>(t.offset_shift));
            offset += (t.nbytes + alignment - 1) / alignment * alignment;
        }
        if (!tensors.empty()) out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
        out.resize(out.size() + offset - static_cast<uint64_t>(cut_data), 0x3c);
        return out;
    }
};

GgufBuilder small_model() {
    GgufBuilder g;
    g.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
    g.tensor("token_embd.weight", {8, 5}).tensor("blk.0.attn_q.weight", {32, 2}, 8 /* q8_0 */).tensor("output_norm.weight", {8});
    return g;
}

// The structural fault is named (message contains `expect`), and ggml refuses the same bytes.
void expect_structure_fault(const std::vector<uint8_t> & bytes, const std::string & expect) {
    const GgufCheck c = inspect_gguf(bytes);
    EXPECT_EQ(c.problem, GgufProblem::structure) << c.message;
    EXPECT_NE(c.message.find(expect), std::string::npos) << "message: " << c.message << "\nexpected: " << expect;
    EXPECT_FALSE(ggml_reads(bytes)) << "ggml reads what the check refuses: " << c.message;
}

}  // namespace

TEST(GgufCheck, TypeTableIsGgmls) {
    ASSERT_EQ(ggml_types().size(), static_cast<size_t>(GGML_TYPE_COUNT));
    for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
        EXPECT_EQ(ggml_types()[static_cast<size_t>(t)].block, ggml_blck_size(static_cast<ggml_type>(t))) << "type " << t;
        EXPECT_EQ(ggml_types()[static_cast<size_t>(t)].bytes, ggml_type_size(static_cast<ggml_type>(t))) << "type " << t;
    }
}

TEST(GgufCheck, RealModelsPassAndAgreeWithGgml) {
    const std::string test_model = testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M"));
    const std::string shipped = FORKJOIN_SHIPPED_MODEL;
    for (const std::string & path : {test_model, shipped}) {
        const GgufCheck c = inspect_gguf_file(path);
        ASSERT_TRUE(c.ok()) << path << ": " << c.message;
        EXPECT_EQ(c.layout.architecture, "llama");
        EXPECT_EQ(c.layout.file_bytes, std::filesystem::file_size(path));
        EXPECT_LE(c.layout.data_offset + c.layout.data_bytes, c.layout.file_bytes + c.layout.alignment);
        gguf_context * g = gguf_init_from_file(path.c_str(), {.no_alloc = true, .ctx = nullptr});
        ASSERT_NE(g, nullptr);
        EXPECT_EQ(c.layout.version, gguf_get_version(g));
        EXPECT_EQ(c.layout.n_tensors, gguf_get_n_tensors(g));
        EXPECT_EQ(c.layout.n_key_values, gguf_get_n_kv(g));
        EXPECT_EQ(c.layout.alignment, gguf_get_alignment(g));
        EXPECT_EQ(c.layout.data_offset, gguf_get_data_offset(g));
        gguf_free(g);
        // The same answer from the bytes in memory.
        const GgufCheck m = inspect_gguf(read_file(path));
        EXPECT_TRUE(m.ok()) << m.message;
        EXPECT_EQ(m.layout.data_bytes, c.layout.data_bytes);
    }
    const GgufBuilder g = small_model();
    const GgufCheck c = inspect_gguf(g.build());
    EXPECT_TRUE(c.ok()) << c.message;
    EXPECT_TRUE(ggml_reads(g.build()));
}

// Cut anywhere before the data: a structure problem that ggml refuses too; cut inside the data: a
// truncated download, which ggml's metadata reader alone accepts (llama.cpp's loader finds it later,
// in its log).
TEST(GgufCheck, EveryCutIsNamed) {
    const std::vector<uint8_t> whole = read_file(testmodel::ensure_test_model(FORKJOIN_TEST_MODEL_DIR, testmodel::test_model_spec("1M")));
    const GgufCheck full = inspect_gguf(whole);
    ASSERT_TRUE(full.ok());
    int structure = 0;
    for (uint64_t cut = 0; cut < full.layout.data_offset; cut += cut < 4096 ? 1 : 97) {
        const std::vector<uint8_t> part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
        const GgufCheck c = inspect_gguf(part);
        ASSERT_EQ(c.problem, GgufProblem::structure) << "cut at " << cut << ": " << c.message;
        ASSERT_LE(c.at, cut);
        ASSERT_FALSE(ggml_reads(part)) << "cut at " << cut;
        structure += c.message.find("truncated") != std::string::npos || c.message.find("ends inside") != std::string::npos;
    }
    EXPECT_GT(structure, 0);
    for (uint64_t cut : {full.layout.data_offset + 1, (full.layout.data_offset + whole.size()) / 2, whole.size() - 1}) {
        const std::vector<uint8_t> part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
        const GgufCheck c = inspect_gguf(part);
        EXPECT_EQ(c.problem, GgufProblem::truncated_data) << "cut at " << cut << ": " << c.message;
        EXPECT_NE(c.message.find("download it again"), std::string::npos) << c.message;
    }
}

TEST(GgufCheck, HeaderFaults) {
    auto with = [](auto edit) {
        std::vector<uint8_t> b = small_model().build();
        edit(b);
        return b;
    };
    expect_structure_fault(with([](auto & b) { b[0] = 'X'; }), "missing the 'GGUF' magic");
    expect_structure_fault(with([](auto & b) { b[4] = 1; }), "version 1");
    expect_structure_fault(with([](auto & b) { b[4] = 0; }), "version 0");
    expect_structure_fault(with([](auto & b) { std::memset(&b[4], 0, 4), b[7] = 3; }), "big-endian");
    expect_structure_fault(with([](auto & b) { b[8 + 7] = 0x80; }), "negative count");
    expect_structure_fault(with([](auto & b) { b[16 + 4] = 0x10; }), "more than the file's");
}

TEST(GgufCheck, MetadataFaults) {
    GgufBuilder g = small_model();
    g.kv_u32("general.architecture", 1);
    expect_structure_fault(g.build(), "'general.architecture' appears twice");
    expect_structure_fault(small_model().kv_str("", "x").build(), "empty key");
    // ggml finds "general.alignment\0" as general.alignment (a C string) but stores it as another key.
    EXPECT_NE(inspect_gguf(small_model().kv_str(std::string("general.alignment\0", 18), "x").build()).message.find("NUL"), std::string::npos);
    expect_structure_fault(small_model().kv_str("general.alignment", "32").build(), "general.alignment must be a uint32");
    expect_structure_fault(small_model().kv_u32("general.alignment", 48).build(), "48 is not a power of 2");
    // A key, a type, then raw 32-bit words (an array's element type) and a 64-bit count.
    auto raw = [](const std::string & key, std::vector<uint32_t> words, std::optional<uint64_t> count = std::nullopt) {
        std::vector<uint8_t> e;
        GgufBuilder::put_str(e, key);
        for (uint32_t w : words) GgufBuilder::put<uint32_t>(e, w);
        if (count) GgufBuilder::put<uint64_t>(e, *count);
        return small_model().kv_raw(e).build();
    };
    expect_structure_fault(raw("x.y", {13}), "'x.y' has no valid type (13)");
    expect_structure_fault(raw("x.nested", {9, 9}, 1), "array of arrays");
    // 2 GiB of floats in a file of a few hundred bytes.
    expect_structure_fault(raw("x.scores", {9, 6}, 1ull << 29), "'x.scores''s 536870912 elements");
    // A model of another alignment reads as ggml reads it.
    GgufBuilder aligned = small_model();
    aligned.kv_u32("general.alignment", 64);
    aligned.alignment = 64;
    EXPECT_TRUE(inspect_gguf(aligned.build()).ok()) << inspect_gguf(aligned.build()).message;
    EXPECT_EQ(inspect_gguf(aligned.build()).layout.data_offset % 64, 0u);
    EXPECT_TRUE(ggml_reads(aligned.build()));
}

TEST(GgufCheck, TensorTableFaults) {
    expect_structure_fault(small_model().tensor("token_embd.weight", {8}).build(), "'token_embd.weight' appears twice");
    expect_structure_fault(small_model().tensor(std::string(64, 'n'), {8}).build(), "64 bytes");
    // A NUL cuts ggml's copy of a name: "output_norm.weight\0x" is the third tensor again there.
    EXPECT_NE(inspect_gguf(small_model().tensor(std::string("output_norm.weight\0x", 20), {8}).build()).message.find("NUL"), std::string::npos);
    expect_structure_fault(small_model().tensor("t", {1, 1, 1, 1, 1}).build(), "5 dimensions");
    expect_structure_fault(small_model().tensor("t", {8, -1}).build(), "negative dimension");
    // ggml's own guard multiplies the shape before it tests it (2^64 elements wrap to 0, which passes),
    // so here the check is the only one that refuses.
    const GgufCheck huge = inspect_gguf(small_model().tensor("t", {1ll << 32, 1ll << 32}).build());
    EXPECT_EQ(huge.problem, GgufProblem::structure);
    EXPECT_NE(huge.message.find("more elements than an int64"), std::string::npos) << huge.message;
    // An empty tensor whose other dimensions overflow (the fuzzer's first find: the check itself
    // multiplied them).
    const GgufCheck empty = inspect_gguf(small_model().tensor("e", {1ll << 33, 1ll << 32, 0}).build());
    EXPECT_EQ(empty.problem, GgufProblem::structure);
    EXPECT_NE(empty.message.find("more elements than an int64"), std::string::npos) << empty.message;
    expect_structure_fault(small_model().tensor("t", {16}, 8).build(), "not a multiple of q8_0's block of 32");
    GgufBuilder removed = small_model();
    removed.tensors.push_back({"t", {32}, 31, 0});
    expect_structure_fault(removed.build(), "q4_0_4_4 (removed)");
    GgufBuilder unknown = small_model();
    unknown.tensors.push_back({"t", {32}, 43, 0});
    expect_structure_fault(unknown.build(), "unknown ggml type (43)");
    GgufBuilder moved = small_model();
    moved.tensors[1].offset_shift = 32;
    expect_structure_fault(moved.build(), "ggml expects 160");
}

TEST(GgufCheck, TruncatedDataAndLimits) {
    GgufBuilder g = small_model();
    g.cut_data = 1;
    const GgufCheck c = inspect_gguf(g.build());
    EXPECT_EQ(c.problem, GgufProblem::truncated_data) << c.message;
    EXPECT_NE(c.message.find("'output_norm.weight''s data"), std::string::npos) << c.message;
    EXPECT_TRUE(ggml_reads(g.build())) << "ggml's metadata reader does not look at the data";
    // Many tensors, well formed: refused before ggml's pairwise name check would take its time.
    GgufBuilder many;
    for (int64_t i = 0; i <= kMaxTensors; ++i) many.tensor(std::to_string(i), {0});
    const GgufCheck m = inspect_gguf(many.build());
    EXPECT_EQ(m.problem, GgufProblem::limit) << m.message;
    EXPECT_NE(m.message.find("at most"), std::string::npos) << m.message;
}
