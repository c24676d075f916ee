#include "backends/llama/gguf_check.h"

#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace forkjoin::llama {

namespace {

// Indexed by ggml_type at the pinned commit; gguf_check_test compares it with ggml's own traits.
constexpr std::array<GgmlTypeTraits, 43> kGgmlTypes = {{
    {"f32", 1, 4},        {"f16", 1, 2},        {"q4_0", 32, 18},     {"q4_1", 32, 20},    {"q4_2 (removed)", 0, 0},
    {"q4_3 (removed)", 0, 0}, {"q5_0", 32, 22}, {"q5_1", 32, 24},     {"q8_0", 32, 34},    {"q8_1", 32, 36},
    {"q2_K", 256, 84},    {"q3_K", 256, 110},   {"q4_K", 256, 144},   {"q5_K", 256, 176},  {"q6_K", 256, 210},
    {"q8_K", 256, 292},   {"iq2_xxs", 256, 66}, {"iq2_xs", 256, 74},  {"iq3_xxs", 256, 98}, {"iq1_s", 256, 50},
    {"iq4_nl", 32, 18},   {"iq3_s", 256, 110},  {"iq2_s", 256, 82},   {"iq4_xs", 256, 136}, {"i8", 1, 1},
    {"i16", 1, 2},        {"i32", 1, 4},        {"i64", 1, 8},        {"f64", 1, 8},       {"iq1_m", 256, 56},
    {"bf16", 1, 2},       {"q4_0_4_4 (removed)", 0, 0}, {"q4_0_4_8 (removed)", 0, 0}, {"q4_0_8_8 (removed)", 0, 0},
    {"tq1_0", 256, 54},   {"tq2_0", 256, 66},   {"iq4_nl_4_4 (removed)", 0, 0}, {"iq4_nl_4_8 (removed)", 0, 0},
    {"iq4_nl_8_8 (removed)", 0, 0}, {"mxfp4", 32, 17}, {"nvfp4", 64, 36}, {"q1_0", 128, 18}, {"q2_0", 64, 18},
}};

constexpr uint64_t kMaxStringBytes = 1ull << 30;   // ggml's GGUF_MAX_STRING_LENGTH
constexpr uint64_t kMaxArrayElements = 1ull << 30;  // ggml's GGUF_MAX_ARRAY_ELEMENTS
constexpr size_t kMaxTensorName = 64;               // GGML_MAX_NAME, the terminating NUL included
constexpr uint32_t kMaxDims = 4;                    // GGML_MAX_DIMS

enum ValueType : uint32_t { u8, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64, type_count };

uint64_t value_bytes(uint32_t type) {
    switch (type) {
        case u8: case i8: case boolean: return 1;
        case u16: case i16: return 2;
        case u32: case i32: case f32: return 4;
        case u64: case i64: case f64: return 8;
        default: return 0;  // string, array: variable
    }
}

// Random access to the bytes being checked.
class Source {
public:
    virtual ~Source() = default;
    virtual uint64_t size() const = 0;
    // Copies n bytes at offset; the caller has checked that they lie inside size().
    virtual bool read(uint64_t offset, void * dst, size_t n) = 0;
};

class MemorySource final : public Source {
public:
    explicit MemorySource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
    uint64_t size() const override { return bytes_.size(); }
    bool read(uint64_t offset, void * dst, size_t n) override {
        if (n) std::memcpy(dst, bytes_.data() + offset, n);
        return true;
    }

private:
    std::span<const uint8_t> bytes_;
};

class FileSource final : public Source {
public:
    FileSource(std::ifstream & in, uint64_t size) : in_(in), size_(size) {}
    uint64_t size() const override { return size_; }
    bool read(uint64_t offset, void * dst, size_t n) override {
        if (offset != at_) in_.seekg(static_cast<std::streamoff>(offset));
        in_.read(static_cast<char *>(dst), static_cast<std::streamsize>(n));
        at_ = offset + n;
        return static_cast<size_t>(in_.gcount()) == n;
    }

private:
    std::ifstream & in_;
    uint64_t size_;
    uint64_t at_ = 0;
};

// Reads the structure front to back; the first problem stops it (its message and offset kept).
class Reader {
public:
    explicit Reader(Source & src) : src_(src) { out_.layout.file_bytes = src.size(); }

    GgufCheck run() {
        header() && key_values() && tensors();
        return std::move(out_);
    }

private:
    bool fail(GgufProblem p, std::string message, uint64_t at) {
        out_.problem = p;
        out_.message = std::move(message);
        out_.at = at;
        return false;
    }
    bool short_read(const std::string & what, uint64_t need) {
        return fail(GgufProblem::structure,
                    "the file ends inside " + what + " (" + std::to_string(need) + " bytes needed at byte " + std::to_string(pos_) +
                        ", the file has " + std::to_string(src_.size()) + "): it is truncated or not a GGUF file",
                    pos_);
    }
    uint64_t remaining() const { return src_.size() - pos_; }

    bool take(void * dst, size_t n, const std::string & what) {
        if (n > remaining()) return short_read(what, n);
        if (!src_.read(pos_, dst, n)) return fail(GgufProblem::structure, "cannot read the file at byte " + std::to_string(pos_), pos_);
        pos_ += n;
        return true;
    }
    template <typename T> bool take(T & v, const std::string & what) { return take(&v, sizeof v, what); }
    bool skip(uint64_t n, const std::string & what) {
        if (n > remaining()) return short_read(what, n);
        pos_ += n;
        return true;
    }
    // A GGUF string: u64 length, then its bytes (kept in *out when given).
    bool str(std::string * out, const std::string & what) {
        const uint64_t at = pos_;
        uint64_t n = 0;
        if (!take(n, what + "'s length")) return false;
        if (n > kMaxStringBytes) {
            return fail(GgufProblem::structure, what + " claims " + std::to_string(n) + " bytes, past GGUF's limit of 1 GiB", at);
        }
        if (!out) return skip(n, what);
        if (n > remaining()) return short_read(what, n);
        out->resize(static_cast<size_t>(n));
        return take(out->data(), static_cast<size_t>(n), what);
    }

    bool header() {
        char magic[4];
        if (!take(magic, 4, "the magic")) return false;
        if (std::memcmp(magic, "GGUF", 4) != 0) return fail(GgufProblem::structure, "not a GGUF file (missing the 'GGUF' magic)", 0);
        uint32_t version = 0;
        if (!take(version, "the version")) return false;
        out_.layout.version = version;
        if (version == 1) return fail(GgufProblem::structure, "GGUF version 1 is no longer read by llama.cpp: convert the model again", 4);
        if (version > 3) {
            const bool swapped = (version & 0xFFFF) == 0;
            return fail(GgufProblem::structure,
                        "unsupported GGUF version " + std::to_string(version) +
                            (swapped ? " (a big-endian file? llama.cpp reads little-endian GGUF)" : " (llama.cpp reads 2 and 3)"),
                        4);
        }
        if (version == 0) return fail(GgufProblem::structure, "GGUF version 0 is not a version", 4);
        int64_t n_tensors = 0, n_kv = 0;
        if (!take(n_tensors, "the tensor count") || !take(n_kv, "the metadata count")) return false;
        out_.layout.n_tensors = n_tensors;
        out_.layout.n_key_values = n_kv;
        if (n_tensors < 0 || n_kv < 0) {
            return fail(GgufProblem::structure, "negative count in the header (" + std::to_string(n_tensors) + " tensors, " +
                                                    std::to_string(n_kv) + " metadata pairs)", 8);
        }
        // Each pair takes at least 13 bytes (an empty key is refused: 8 + 1, a type 4) and each tensor 24.
        if (static_cast<uint64_t>(n_kv) > remaining() / 13 || static_cast<uint64_t>(n_tensors) > remaining() / 24) {
            return fail(GgufProblem::structure, "the header declares " + std::to_string(n_kv) + " metadata pairs and " +
                                                    std::to_string(n_tensors) + " tensors, more than the file's " +
                                                    std::to_string(src_.size()) + " bytes can hold: it is truncated or corrupted", 8);
        }
        if (n_kv > kMaxKeyValues || n_tensors > kMaxTensors) {
            return fail(GgufProblem::limit, "the header declares " + std::to_string(n_kv) + " metadata pairs and " +
                                                std::to_string(n_tensors) + " tensors; forkjoin loads at most " +
                                                std::to_string(kMaxKeyValues) + " and " + std::to_string(kMaxTensors), 8);
        }
        return true;
    }

    bool key_values() {
        std::unordered_set<std::string> keys;
        for (int64_t i = 0; i < out_.layout.n_key_values; ++i) {
            const uint64_t at = pos_;
            const std::string which = "metadata pair " + std::to_string(i);
            std::string key;
            if (!str(&key, which + "'s key")) return false;
            if (key.empty()) return fail(GgufProblem::structure, which + " has an empty key", at);
            // ggml looks keys up as C strings: "general.alignment\0x" would be found as general.alignment.
            if (key.find('\0') != std::string::npos) return fail(GgufProblem::structure, which + "'s key holds a NUL byte", at);
            if (!keys.insert(key).second) return fail(GgufProblem::structure, "metadata key '" + key + "' appears twice", at);
            const std::string what = "metadata '" + key + "'";
            const uint64_t type_at = pos_;
            uint32_t type = 0;
            if (!take(type, what + "'s type")) return false;
            if (type >= type_count) return fail(GgufProblem::structure, what + " has no valid type (" + std::to_string(type) + ")", type_at);
            if (key == "general.alignment" && type != u32) return fail(GgufProblem::structure, "general.alignment must be a uint32", type_at);
            if (type == array) {
                uint32_t element = 0;
                uint64_t n = 0;
                if (!take(element, what + "'s element type")) return false;
                if (element >= type_count || element == array) {
                    return fail(GgufProblem::structure,
                                what + (element == array ? " is an array of arrays, which GGUF readers refuse" : " has arrays of no valid type (" + std::to_string(element) + ")"),
                                type_at);
                }
                if (!take(n, what + "'s element count")) return false;
                if (n > kMaxArrayElements) return fail(GgufProblem::structure, what + " claims " + std::to_string(n) + " elements, past GGUF's limit of 2^30", type_at);
                if (element == string) {
                    for (uint64_t k = 0; k < n; ++k) {
                        if (!str(nullptr, what + "[" + std::to_string(k) + "]")) return false;
                    }
                } else if (n > remaining() / value_bytes(element)) {
                    return short_read(what + "'s " + std::to_string(n) + " elements", n * value_bytes(element));
                } else if (!skip(n * value_bytes(element), what)) {
                    return false;
                }
                continue;
            }
            if (key == "general.alignment") {
                uint32_t a = 0;
                if (!take(a, what)) return false;
                if (a == 0 || (a & (a - 1)) != 0) return fail(GgufProblem::structure, "general.alignment " + std::to_string(a) + " is not a power of 2", type_at);
                out_.layout.alignment = a;
            } else if (type == string) {
                if (!str(key == "general.architecture" ? &out_.layout.architecture : nullptr, what)) return false;
            } else if (!skip(value_bytes(type), what)) {
                return false;
            }
        }
        return true;
    }

    bool tensors() {
        struct Info {
            std::string name;
            uint64_t nbytes = 0;
            uint64_t offset = 0;
            uint64_t at = 0;
        };
        std::vector<Info> infos;
        std::unordered_set<std::string> names;
        const uint64_t align = out_.layout.alignment;
        for (int64_t i = 0; i < out_.layout.n_tensors; ++i) {
            const uint64_t at = pos_;
            Info info;
            info.at = at;
            if (!str(&info.name, "tensor " + std::to_string(i) + "'s name")) return false;
            const std::string what = "tensor '" + info.name + "'";
            if (info.name.size() >= kMaxTensorName) {
                return fail(GgufProblem::structure, "tensor " + std::to_string(i) + "'s name is " + std::to_string(info.name.size()) + " bytes, ggml keeps under 64", at);
            }
            // ggml keeps a name as a C string: a NUL inside would cut it (and two names could meet).
            if (info.name.find('\0') != std::string::npos) return fail(GgufProblem::structure, "tensor " + std::to_string(i) + "'s name holds a NUL byte", at);
            if (!names.insert(info.name).second) return fail(GgufProblem::structure, what + " appears twice", at);
            uint32_t n_dims = 0;
            if (!take(n_dims, what + "'s dimension count")) return false;
            if (n_dims > kMaxDims) return fail(GgufProblem::structure, what + " has " + std::to_string(n_dims) + " dimensions, ggml has at most 4", at);
            int64_t ne[kMaxDims] = {1, 1, 1, 1};
            for (uint32_t d = 0; d < n_dims; ++d) {
                if (!take(ne[d], what + "'s shape")) return false;
                if (ne[d] < 0) return fail(GgufProblem::structure, what + " has a negative dimension (" + std::to_string(ne[d]) + ")", at);
            }
            // The element count must fit an int64: ggml's test (its strict <= included) for a tensor with
            // elements; for an empty one, the product of its other dimensions (ggml's strides take them).
            constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
            const bool empty = ne[0] == 0 || ne[1] == 0 || ne[2] == 0 || ne[3] == 0;
            int64_t others = 1;
            bool overflow = false;
            for (int64_t x : ne) overflow = overflow || __builtin_mul_overflow(others, x == 0 ? 1 : x, &others);
            if (overflow || (!empty && (kMax / ne[1] <= ne[0] || kMax / ne[2] <= ne[0] * ne[1] || kMax / ne[3] <= ne[0] * ne[1] * ne[2]))) {
                return fail(GgufProblem::structure, what + " has more elements than an int64 counts", at);
            }
            const int64_t elements = empty ? 0 : others;
            const uint64_t type_at = pos_;
            uint32_t type = 0;
            if (!take(type, what + "'s type")) return false;
            if (type >= kGgmlTypes.size()) return fail(GgufProblem::structure, what + " has an unknown ggml type (" + std::to_string(type) + ")", type_at);
            const GgmlTypeTraits & t = kGgmlTypes[type];
            if (t.block == 0) return fail(GgufProblem::structure, what + " has type " + t.name + ", which llama.cpp no longer reads: convert the model again", type_at);
            if (ne[0] % t.block != 0) {
                return fail(GgufProblem::structure, what + " has " + std::to_string(ne[0]) + " elements per row, not a multiple of " + t.name + "'s block of " + std::to_string(t.block), at);
            }
            const uint64_t blocks = static_cast<uint64_t>(elements / t.block);
            if (blocks > std::numeric_limits<uint64_t>::max() / t.bytes) return fail(GgufProblem::structure, what + "'s size in bytes overflows", at);
            info.nbytes = blocks * t.bytes;
            if (!take(info.offset, what + "'s data offset")) return false;
            infos.push_back(std::move(info));
        }
        // The data section starts at the next multiple of the alignment, and ggml wants each tensor
        // where the previous one ended, padded.
        if (!infos.empty()) {
            const uint64_t start = (pos_ + align - 1) / align * align;
            if (start > src_.size()) return short_read("the padding before the tensor data", start - pos_);
            out_.layout.data_offset = start;
        } else {
            out_.layout.data_offset = pos_;
        }
        uint64_t expected = 0;
        for (const Info & info : infos) {
            const std::string what = "tensor '" + info.name + "'";
            if (info.offset != expected) {
                return fail(GgufProblem::structure, what + "'s data is at offset " + std::to_string(info.offset) + " of the data section; ggml expects " +
                                                        std::to_string(expected) + " (tensors one after another, each padded to " + std::to_string(align) + ")",
                            info.at);
            }
            const uint64_t padded = info.nbytes + (align - info.nbytes % align) % align;
            if (padded < info.nbytes || std::numeric_limits<uint64_t>::max() - expected < padded) {
                return fail(GgufProblem::structure, what + "'s data section overflows", info.at);
            }
            expected += padded;
        }
        out_.layout.data_bytes = expected;
        // A truncated download: the structure is whole, the data is not.
        for (const Info & info : infos) {
            const uint64_t begin = out_.layout.data_offset + info.offset;
            if (begin < info.offset || begin > src_.size() || info.nbytes > src_.size() - begin) {
                return fail(GgufProblem::truncated_data,
                            "tensor '" + info.name + "''s data (" + std::to_string(info.nbytes) + " bytes at byte " + std::to_string(begin) +
                                ") ends past the end of the file (" + std::to_string(src_.size()) + " bytes): the file is truncated (download it again)",
                            begin);
            }
        }
        return true;
    }

    Source & src_;
    uint64_t pos_ = 0;
    GgufCheck out_;
};

}  // namespace

std::span<const GgmlTypeTraits> ggml_types() { return kGgmlTypes; }

GgufCheck inspect_gguf(std::span<const uint8_t> bytes) {
    MemorySource src(bytes);
    return Reader(src).run();
}

GgufCheck inspect_gguf_file(const std::string & path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) {
        GgufCheck c;
        c.problem = GgufProblem::structure;
        c.message = "cannot open the file for reading";
        return c;
    }
    const auto end = in.tellg();
    in.seekg(0);
    FileSource src(in, end < 0 ? 0 : static_cast<uint64_t>(end));
    return Reader(src).run();
}

}  // namespace forkjoin::llama
