// A baseline-JPEG decoder for 1/4 and 1/8 scale whose output equals libjpeg-turbo's bit for
// bit; see the header for what it accepts and why it exists. Anything outside that returns
// false early, before any pixel is written, or as soon as the data turns out to be damaged.
#include "whisker/data/jpeg_reduced_decode.h"

#include <opencv2/core.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace whisker::data {

namespace {

// Position in the 8x8 block (row-major) of the k-th coefficient of the zig-zag sequence; past
// 63 the 65th slot of a block, which no transform reads: the coefficient loop stores before it
// checks (a run past the end in damaged data), and writes a zero one past a block's last
// coefficient.
constexpr int kBlockSlots = 72;  // 64 coefficients, a spare slot, padding to a 16-byte multiple
constexpr std::array<std::uint8_t, 128> kZigzagToNatural = [] {
    constexpr std::uint8_t order[64] = {
        0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
        41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
        30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};
    std::array<std::uint8_t, 128> table{};
    for (int k = 0; k < 128; ++k) table[k] = k < 64 ? order[k] : 64;
    return table;
}();

// ---------------------------------------------------------------------------------------------
// Huffman tables

// Width of the lookups. 2^11 entries: on camera-like 3-megapixel files 98.8 % of the symbols
// decode in one lookup with their extra bits, and 55 % of the AC lookups take two coefficients
// (with one symbol per lookup, 9 and 10 bits measured slower; 12 would double the tables to
// 32 kB of pairs each, the size of a whole L1 data cache).
constexpr int kLookupBits = 11;

struct LookupEntry {
    std::int16_t value = 0;          // the coefficient (or DC difference), when whole_length > 0
    std::uint8_t symbol = 0;         // the Huffman symbol: run << 4 | size (DC: size)
    std::uint8_t lengths = 0;        // low nibble: code length (0: longer than kLookupBits);
                                     // high nibble: code + extra bits when they all fit, else 0
};

// For AC tables: what the next kLookupBits bits hold, up to two coefficients or an end of
// block, so that most lookups advance two coefficients (photographs' AC codes and their extra
// bits average about 5 bits). The coefficient loop applies an entry without branching on what
// it holds: it writes `first` at k + first_run, `second` at that + second_step (a zero written
// one past the first when there is no second: harmless, positions only grow), then moves k to
// the first's position + next.
struct PairEntry {
    std::int16_t first = 0, second = 0;
    std::uint8_t first_run = 0, second_step = 1, next = 1;
    std::uint8_t length_and_end = 0;  // bits 0-3: bits used (0: decode the slow way); bit 4: block ends
};

struct HuffmanTable {
    bool defined = false;
    std::array<LookupEntry, 1 << kLookupBits> lookup{};
    std::array<PairEntry, 1 << kLookupBits> pairs{};  // AC tables only
    // Canonical decoding of codes longer than kLookupBits: the largest code of each length
    // (-1 when none) and, per length, the offset from a code to its symbol's index in `values`.
    std::array<std::int32_t, 18> max_code{};
    std::array<std::int32_t, 18> value_offset{};
    std::array<std::uint8_t, 256> values{};
};

inline int extend_sign(std::uint32_t bits, int size) {
    // JPEG's magnitude categories: a leading 0 bit means a negative value.
    return bits < (1u << (size - 1)) ? static_cast<int>(bits) - (1 << size) + 1 : static_cast<int>(bits);
}

// From a DHT segment's 16 code-length counts and its symbols. False for a table that is not a
// valid prefix code (libjpeg-turbo rejects those too) or a DC table with symbols above 15.
bool build_huffman_table(const std::uint8_t* counts, const std::uint8_t* symbols, int symbol_count,
                         bool is_dc, HuffmanTable& table) {
    table = HuffmanTable{};
    std::array<std::uint8_t, 257> code_length{};
    std::array<std::uint32_t, 257> code{};
    int n = 0;
    for (int length = 1; length <= 16; ++length)
        for (int i = 0; i < counts[length - 1]; ++i) code_length[n++] = static_cast<std::uint8_t>(length);
    if (n != symbol_count) return false;
    std::uint32_t next = 0;
    int index = 0;
    for (int length = 1; length <= 16; ++length) {
        table.value_offset[length] = index - static_cast<std::int32_t>(next);
        const int first = index;
        while (index < n && code_length[index] == length) code[index++] = next++;
        table.max_code[length] = index > first ? static_cast<std::int32_t>(next - 1) : -1;
        if (next > (1u << length)) return false;  // more codes than this length can hold
        next <<= 1;
    }
    table.max_code[17] = 0x7fffffff;
    for (int i = 0; i < n; ++i) {
        table.values[i] = symbols[i];
        if (is_dc && symbols[i] > 15) return false;
    }
    for (int i = 0; i < n; ++i) {
        const int length = code_length[i];
        if (length > kLookupBits) continue;
        const int size = symbols[i] & 15;
        const int spare = kLookupBits - length;
        const std::uint32_t first = code[i] << spare;
        for (std::uint32_t fill = 0; fill < (1u << spare); ++fill) {
            LookupEntry& e = table.lookup[first | fill];
            e.symbol = symbols[i];
            e.lengths = static_cast<std::uint8_t>(length);
            if (length + size <= kLookupBits) {
                if (size > 0) {
                    const std::uint32_t extra = (fill >> (spare - size)) & ((1u << size) - 1);
                    e.value = static_cast<std::int16_t>(extend_sign(extra, size));
                }
                e.lengths = static_cast<std::uint8_t>(length | (length + size) << 4);
            }
        }
    }
    if (!is_dc) {
        const std::uint32_t mask = (1u << kLookupBits) - 1;
        for (std::uint32_t prefix = 0; prefix <= mask; ++prefix) {
            const LookupEntry a = table.lookup[prefix];
            const int used_a = a.lengths >> 4;
            PairEntry& e = table.pairs[prefix];
            if (used_a == 0) continue;  // slow: a long code, or extra bits past the lookup
            const bool a_ends = (a.symbol & 15) == 0 && a.symbol != 0xF0;
            e.length_and_end = static_cast<std::uint8_t>(used_a | (a_ends ? 16 : 0));
            if (a_ends) continue;  // end of block: k no longer matters
            e.first = a.value;  // ZRL (0xF0): value 0 after a run of 15, i.e. sixteen zeros
            e.first_run = a.symbol >> 4;
            const LookupEntry b = table.lookup[(prefix << used_a) & mask];
            const int used_b = b.lengths >> 4;
            if (used_b == 0 || used_a + used_b > kLookupBits) continue;  // one coefficient
            const bool b_ends = (b.symbol & 15) == 0 && b.symbol != 0xF0;
            e.length_and_end = static_cast<std::uint8_t>((used_a + used_b) | (b_ends ? 16 : 0));
            if (b_ends) {
                // A block whose last coefficient is at 63 has no end-of-block code: `next` 2
                // keeps the loop from taking this entry there (k is not used after an end).
                e.next = 2;
                continue;
            }
            e.second = b.value;
            e.second_step = static_cast<std::uint8_t>((b.symbol >> 4) + 1);
            e.next = static_cast<std::uint8_t>((b.symbol >> 4) + 2);
        }
    }
    table.defined = true;
    return true;
}

// ---------------------------------------------------------------------------------------------
// The entropy-coded bit stream

inline std::uint64_t load_big_endian64(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

struct BitReader {
    const std::uint8_t* next = nullptr;  // next byte not yet in `bits`
    const std::uint8_t* end = nullptr;   // end of the file
    std::uint64_t bits = 0;              // left-aligned: the next bit of the stream is bit 63
    int count = 0;                       // valid bits in `bits`, padding included
    int padding = 0;                     // of those, the zeros added past a marker or the end
    bool at_marker = false;              // `next` points at a marker (or the end): no more data

    // Makes count > 56 (room for a 16-bit code and 15 extra bits with some to spare).
    inline void refill() {
        if (!at_marker && end - next >= 8) {
            // Eight bytes at once when none of the whole bytes that fit is 0xFF (a stuffed
            // byte or a marker). The test flags every 0xFF byte, and sometimes a 0xFE above
            // one: then the byte-wise path below runs, which is merely slower.
            const std::uint64_t word = load_big_endian64(next);
            const int whole_bytes = (63 - count) >> 3;
            const std::uint64_t wanted = ~0ull << (64 - 8 * whole_bytes);
            const std::uint64_t inverted = ~word;
            const std::uint64_t has_ff = (inverted - 0x0101010101010101ull) & ~inverted & 0x8080808080808080ull;
            if ((has_ff & wanted) == 0) {
                bits |= (word & wanted) >> count;
                count += 8 * whole_bytes;
                next += whole_bytes;
                return;
            }
        }
        refill_bytewise();
    }

    void refill_bytewise() {
        while (count <= 56) {
            std::uint8_t byte = 0;
            if (!at_marker) {
                if (next >= end) {
                    at_marker = true;
                } else if (*next != 0xFF) {
                    byte = *next++;
                } else {
                    // 0xFF 0x00 is a data byte 0xFF; 0xFF fill bytes may precede either.
                    const std::uint8_t* after = next + 1;
                    while (after < end && *after == 0xFF) ++after;
                    if (after < end && *after == 0x00) {
                        byte = 0xFF;
                        next = after + 1;
                    } else {
                        at_marker = true;  // `next` stays on the marker's first 0xFF
                    }
                }
            }
            if (at_marker) padding += 8;
            bits |= static_cast<std::uint64_t>(byte) << (56 - count);
            count += 8;
        }
    }

    // True when the decoder used zeros that were not in the file: the data ended early or a
    // marker interrupted it (libjpeg-turbo warns "premature end of data segment").
    bool overran() const { return count < padding; }
};

#if defined(__GNUC__)
#define WHISKER_ALWAYS_INLINE inline __attribute__((always_inline))
#define WHISKER_NOINLINE __attribute__((noinline))
#else
#define WHISKER_ALWAYS_INLINE inline
#define WHISKER_NOINLINE
#endif

// Decodes one Huffman symbol and its extra bits from the bit buffer `bits` (left-aligned,
// `count` valid bits; the caller keeps them in registers and refills). `symbol` receives
// run << 4 | size (DC: size), `value` the signed coefficient (0 when size is 0). False for a
// code the table lacks.
WHISKER_ALWAYS_INLINE bool decode_value(std::uint64_t& bits, int& count, const HuffmanTable& table, int& symbol,
                                        int& value) {
    const LookupEntry e = table.lookup[bits >> (64 - kLookupBits)];
    if (e.lengths >> 4) {  // code and extra bits in one lookup: most of a photograph's values
        const int n = e.lengths >> 4;
        bits <<= n;
        count -= n;
        symbol = e.symbol;
        value = e.value;
        return true;
    }
    int length = e.lengths & 15;
    if (length != 0) {
        symbol = e.symbol;
    } else {
        length = kLookupBits + 1;
        while (static_cast<std::int32_t>(bits >> (64 - length)) > table.max_code[length]) {
            if (++length > 16) return false;
        }
        const auto code = static_cast<std::int32_t>(bits >> (64 - length));
        symbol = table.values[static_cast<std::uint8_t>(code + table.value_offset[length])];
    }
    bits <<= length;
    count -= length;
    const int size = symbol & 15;
    if (size == 0) {
        value = 0;
    } else {
        value = extend_sign(static_cast<std::uint32_t>(bits >> (64 - size)), size);
        bits <<= size;
        count -= size;
    }
    return true;
}

// Zeroes a block of coefficients. With vector stores: GCC turns a 128-byte memset (or a loop
// of smaller stores) into `rep stos`, whose start-up cost is more than a sparse block's whole
// decoding, 70,000 times per 3-megapixel photo.
inline void clear_block(std::int16_t* block) {
#if defined(__SSE2__)
    // Written out: GCC recognises even a loop of these as a memset.
    const __m128i zero = _mm_setzero_si128();
    auto* b = reinterpret_cast<__m128i*>(block);
    _mm_store_si128(b, zero), _mm_store_si128(b + 1, zero), _mm_store_si128(b + 2, zero), _mm_store_si128(b + 3, zero);
    _mm_store_si128(b + 4, zero), _mm_store_si128(b + 5, zero), _mm_store_si128(b + 6, zero), _mm_store_si128(b + 7, zero);
#else
    std::memset(block, 0, 64 * sizeof(std::int16_t));
#endif
}

// Decodes one block's coefficients into `block` (natural order, which must be all zeros on
// entry; with store_ac false only the DC coefficient is written, the rest is parsed and
// dropped). False on a bad code or a run past the block's end. Not inlined on purpose: on its
// own the coefficient loop keeps the bit buffer, its count and k in registers; inlined into the
// MCU loop they were spilled to the stack, which put a store-to-load delay on every coefficient.
template <bool store_ac>
WHISKER_NOINLINE bool decode_block(BitReader& in, const HuffmanTable& dc_table, const HuffmanTable& ac_table,
                                        int& last_dc, std::int16_t* block) {
    std::uint64_t bits = in.bits;
    int count = in.count;
    auto ensure_bits = [&] {
        // >= 32 bits: a 16-bit code and its 15 extra bits always fit.
        if (count < 32) {
            in.bits = bits;
            in.count = count;
            in.refill();
            bits = in.bits;
            count = in.count;
        }
    };
    int symbol = 0, value = 0;
    ensure_bits();
    if (!decode_value(bits, count, dc_table, symbol, value)) return false;
    const long long dc = static_cast<long long>(last_dc) + value;
    if (dc > (1 << 30) || dc < -(1 << 30)) return false;
    last_dc = static_cast<int>(dc);
    block[0] = static_cast<std::int16_t>(last_dc);
    for (int k = 1; k < 64;) {
        ensure_bits();
        const PairEntry e = ac_table.pairs[bits >> (64 - kLookupBits)];
        const int used = e.length_and_end & 15;
        const int at = k + e.first_run;
        // (A pair whose first coefficient fills the block's last position is not taken whole:
        // the bits after it belong to the next block.)
        if (used != 0 && at + e.next <= 64) {
            bits <<= used;
            count -= used;
            if (store_ac) {
                block[kZigzagToNatural[at]] = e.first;
                block[kZigzagToNatural[at + e.second_step]] = e.second;
            }
            if (e.length_and_end & 16) break;  // end of block
            k = at + e.next;
            continue;
        }
        // A long code or large value, or the block's last coefficient: one symbol the canonical way.
        if (!decode_value(bits, count, ac_table, symbol, value)) return false;
        if ((symbol & 15) == 0) {
            if (symbol != 0xF0) break;  // end of block
            k += 16;                    // sixteen zeros
            continue;
        }
        k += symbol >> 4;
        if (k > 63) return false;
        if (store_ac) block[kZigzagToNatural[k]] = static_cast<std::int16_t>(value);
        ++k;
    }
    in.bits = bits;
    in.count = count;
    return true;
}

// ---------------------------------------------------------------------------------------------
// Reduced inverse DCTs: libjpeg's jidctred.c arithmetic (ISLOW scaling, CONST_BITS 13,
// PASS1_BITS 2), so the results equal libjpeg-turbo's for every block.

constexpr int kConstBits = 13;
constexpr int kPass1Bits = 2;

inline std::int64_t descale(std::int64_t x, int n) { return (x + (std::int64_t{1} << (n - 1))) >> n; }

// libjpeg's post-IDCT range limit: 10 bits of the value, signed, plus 128, clamped to 0..255
// (out-of-range values from damaged data wrap as libjpeg's table makes them). A table, as in
// libjpeg: the clamp's branches mispredict on textured photographs.
struct RangeLimit {
    std::array<std::uint8_t, 1024> table{};
    RangeLimit() {
        for (int i = 0; i < 1024; ++i) {
            const int v = i >= 512 ? i - 1024 : i;
            table[i] = static_cast<std::uint8_t>(std::clamp(v + 128, 0, 255));
        }
    }
};
const RangeLimit kRangeLimit;
inline std::uint8_t to_sample(std::int64_t x) { return kRangeLimit.table[static_cast<int>(x) & 1023]; }

void idct_1x1(const std::int16_t* c, const std::int16_t* q, std::uint8_t* out, std::ptrdiff_t) {
    out[0] = to_sample(descale(static_cast<std::int64_t>(c[0]) * q[0], 3));
}

#if defined(__SSE2__)
// The column pass of both transforms, eight columns at a time in 32-bit lanes: each row of
// the block is one vector. Dequantising with a 16-bit multiply, as libjpeg-turbo's SIMD code
// does (valid data never exceeds 16 bits there). The row pass, on 2 or 4 rows, stays scalar.
struct Columns {
    __m128i lo, hi;  // columns 0-3 and 4-7
};
inline __m128i dequantised_row(const std::int16_t* c, const std::int16_t* q, int row) {
    return _mm_mullo_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(c + 8 * row)),
                           _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 8 * row)));
}
// a * ca + b * cb per column, 32-bit.
inline Columns weighted_pair(__m128i a, __m128i b, std::int16_t ca, std::int16_t cb) {
    const __m128i k = _mm_set1_epi32(static_cast<std::int32_t>(static_cast<std::uint16_t>(ca)) |
                                     static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(cb)) << 16));
    return {_mm_madd_epi16(_mm_unpacklo_epi16(a, b), k), _mm_madd_epi16(_mm_unpackhi_epi16(a, b), k)};
}
// a << shift per column, 32-bit (the 16-bit values widened with their sign).
inline Columns widened_shifted(__m128i a, int shift) {
    const __m128i zero = _mm_setzero_si128();
    return {_mm_srai_epi32(_mm_unpacklo_epi16(zero, a), 16 - shift), _mm_srai_epi32(_mm_unpackhi_epi16(zero, a), 16 - shift)};
}
inline Columns add(Columns a, Columns b) { return {_mm_add_epi32(a.lo, b.lo), _mm_add_epi32(a.hi, b.hi)}; }
inline Columns sub(Columns a, Columns b) { return {_mm_sub_epi32(a.lo, b.lo), _mm_sub_epi32(a.hi, b.hi)}; }
inline void store_descaled(Columns a, int n, std::int32_t* out) {
    const __m128i round = _mm_set1_epi32(1 << (n - 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_sra_epi32(_mm_add_epi32(a.lo, round), _mm_cvtsi32_si128(n)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 4), _mm_sra_epi32(_mm_add_epi32(a.hi, round), _mm_cvtsi32_si128(n)));
}

// The row pass, vectorised across rows: the workspace goes to 16 bits (what libjpeg-turbo's
// SIMD code keeps it in; valid data stays far inside) and is transposed so that each vector
// holds one column of it for every row.
inline __m128i packed_row(Columns a) { return _mm_packs_epi32(a.lo, a.hi); }
inline __m128i descaled(__m128i a, int n) {
    return _mm_sra_epi32(_mm_add_epi32(a, _mm_set1_epi32(1 << (n - 1))), _mm_cvtsi32_si128(n));
}
inline __m128i madd_pair(__m128i a, __m128i b, std::int16_t ca, std::int16_t cb) {
    const __m128i k = _mm_set1_epi32(static_cast<std::int32_t>(static_cast<std::uint16_t>(ca)) |
                                     static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(cb)) << 16));
    return _mm_madd_epi16(_mm_unpacklo_epi16(a, b), k);
}
// to_sample() on four 32-bit lanes: the low 10 bits, signed, plus 128, clamped by the packs.
inline __m128i range_limited(__m128i a) {
    return _mm_add_epi32(_mm_srai_epi32(_mm_slli_epi32(a, 22), 22), _mm_set1_epi32(128));
}

void idct_2x2(const std::int16_t* c, const std::int16_t* q, std::uint8_t* out, std::ptrdiff_t stride) {
    const Columns even = widened_shifted(dequantised_row(c, q, 0), kConstBits + 2);
    const Columns odd = add(weighted_pair(dequantised_row(c, q, 7), dequantised_row(c, q, 5), -5906, 6967),
                            weighted_pair(dequantised_row(c, q, 3), dequantised_row(c, q, 1), -10426, 29692));
    constexpr int shift1 = kConstBits - kPass1Bits + 2;
    const Columns r0 = add(even, odd), r1 = sub(even, odd);
    const __m128i w0 = packed_row({descaled(r0.lo, shift1), descaled(r0.hi, shift1)});
    const __m128i w1 = packed_row({descaled(r1.lo, shift1), descaled(r1.hi, shift1)});
    // Columns of the workspace, two rows each (16-bit lanes 0 and 1).
    const __m128i t0 = _mm_unpacklo_epi16(w0, w1), t1 = _mm_unpackhi_epi16(w0, w1);
    const __m128i col0 = t0, col1 = _mm_srli_si128(t0, 4), col3 = _mm_srli_si128(t0, 12);
    const __m128i col5 = _mm_srli_si128(t1, 4), col7 = _mm_srli_si128(t1, 12);
    const __m128i e = _mm_srai_epi32(_mm_unpacklo_epi16(_mm_setzero_si128(), col0), 16 - (kConstBits + 2));
    const __m128i o = _mm_add_epi32(madd_pair(col7, col5, -5906, 6967), madd_pair(col3, col1, -10426, 29692));
    constexpr int shift2 = kConstBits + kPass1Bits + 3 + 2;
    // Lanes: (row 0, col 0), (row 0, col 1), (row 1, col 0), (row 1, col 1).
    const __m128i left = descaled(_mm_add_epi32(e, o), shift2), right = descaled(_mm_sub_epi32(e, o), shift2);
    const __m128i samples = range_limited(_mm_unpacklo_epi32(left, right));
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(samples, samples), _mm_setzero_si128());
    const auto both = static_cast<std::uint32_t>(_mm_cvtsi128_si32(bytes));
    const std::uint16_t row0 = static_cast<std::uint16_t>(both), row1 = static_cast<std::uint16_t>(both >> 16);
    std::memcpy(out, &row0, 2);
    std::memcpy(out + stride, &row1, 2);
}

void idct_4x4(const std::int16_t* c, const std::int16_t* q, std::uint8_t* out, std::ptrdiff_t stride) {
    const Columns dc = widened_shifted(dequantised_row(c, q, 0), kConstBits + 1);
    const Columns rotated = weighted_pair(dequantised_row(c, q, 2), dequantised_row(c, q, 6), 15137, -6270);
    const Columns even0 = add(dc, rotated), even1 = sub(dc, rotated);
    const __m128i d7 = dequantised_row(c, q, 7), d5 = dequantised_row(c, q, 5);
    const __m128i d3 = dequantised_row(c, q, 3), d1 = dequantised_row(c, q, 1);
    const Columns odd1 = add(weighted_pair(d7, d5, -1730, 11893), weighted_pair(d3, d1, -17799, 8697));
    const Columns odd0 = add(weighted_pair(d7, d5, -4176, -4926), weighted_pair(d3, d1, 7373, 20995));
    constexpr int shift1 = kConstBits - kPass1Bits + 1;
    auto row = [](Columns a) { return packed_row({descaled(a.lo, shift1), descaled(a.hi, shift1)}); };
    const __m128i w0 = row(add(even0, odd0)), w3 = row(sub(even0, odd0));
    const __m128i w1 = row(add(even1, odd1)), w2 = row(sub(even1, odd1));
    // Transpose: each column of the workspace with its four rows in 16-bit lanes 0-3.
    const __m128i t0 = _mm_unpacklo_epi16(w0, w1), t1 = _mm_unpackhi_epi16(w0, w1);
    const __m128i t2 = _mm_unpacklo_epi16(w2, w3), t3 = _mm_unpackhi_epi16(w2, w3);
    const __m128i u0 = _mm_unpacklo_epi32(t0, t2), u1 = _mm_unpackhi_epi32(t0, t2);
    const __m128i u2 = _mm_unpacklo_epi32(t1, t3), u3 = _mm_unpackhi_epi32(t1, t3);
    const __m128i col0 = u0, col1 = _mm_srli_si128(u0, 8), col2 = u1, col3 = _mm_srli_si128(u1, 8);
    const __m128i col5 = _mm_srli_si128(u2, 8), col6 = u3, col7 = _mm_srli_si128(u3, 8);
    const __m128i dc2 = _mm_srai_epi32(_mm_unpacklo_epi16(_mm_setzero_si128(), col0), 16 - (kConstBits + 1));
    const __m128i rot2 = madd_pair(col2, col6, 15137, -6270);
    const __m128i e0 = _mm_add_epi32(dc2, rot2), e1 = _mm_sub_epi32(dc2, rot2);
    const __m128i o1 = _mm_add_epi32(madd_pair(col7, col5, -1730, 11893), madd_pair(col3, col1, -17799, 8697));
    const __m128i o0 = _mm_add_epi32(madd_pair(col7, col5, -4176, -4926), madd_pair(col3, col1, 7373, 20995));
    constexpr int shift2 = kConstBits + kPass1Bits + 3 + 1;
    // Output columns 0-3, each with rows 0-3 in its lanes.
    const __m128i out0 = range_limited(descaled(_mm_add_epi32(e0, o0), shift2));
    const __m128i out3 = range_limited(descaled(_mm_sub_epi32(e0, o0), shift2));
    const __m128i out1 = range_limited(descaled(_mm_add_epi32(e1, o1), shift2));
    const __m128i out2 = range_limited(descaled(_mm_sub_epi32(e1, o1), shift2));
    // Bytes column by column, then a 4x4 byte transpose to rows.
    const __m128i by_column = _mm_packus_epi16(_mm_packs_epi32(out0, out1), _mm_packs_epi32(out2, out3));
    const __m128i half = _mm_unpacklo_epi8(by_column, _mm_srli_si128(by_column, 8));
    const __m128i by_row = _mm_unpacklo_epi8(half, _mm_srli_si128(half, 8));
    alignas(16) std::uint32_t rows[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(rows), by_row);
    for (int r = 0; r < 4; ++r) std::memcpy(out + r * stride, &rows[r], 4);
}
#else
void idct_2x2(const std::int16_t* c, const std::int16_t* q, std::uint8_t* out, std::ptrdiff_t stride) {
    // The 2-point transform reads columns (then rows) 0, 1, 3, 5 and 7 only.
    std::int32_t ws[2][8];  // libjpeg's workspace is int
    for (int col : {0, 1, 3, 5, 7}) {
        auto d = [&](int row) { return static_cast<std::int64_t>(c[row * 8 + col]) * q[row * 8 + col]; };
        if (c[8 + col] == 0 && c[24 + col] == 0 && c[40 + col] == 0 && c[56 + col] == 0) {
            ws[0][col] = ws[1][col] = static_cast<std::int32_t>(d(0) * (1 << kPass1Bits));
            continue;
        }
        const std::int64_t even = d(0) * (1 << (kConstBits + 2));
        const std::int64_t odd = d(7) * -5906 + d(5) * 6967 + d(3) * -10426 + d(1) * 29692;
        ws[0][col] = static_cast<std::int32_t>(descale(even + odd, kConstBits - kPass1Bits + 2));
        ws[1][col] = static_cast<std::int32_t>(descale(even - odd, kConstBits - kPass1Bits + 2));
    }
    for (int row = 0; row < 2; ++row) {
        const std::int32_t* w32 = ws[row];
        const std::int64_t w[8] = {w32[0], w32[1], w32[2], w32[3], w32[4], w32[5], w32[6], w32[7]};
        std::uint8_t* o = out + row * stride;
        if (w[1] == 0 && w[3] == 0 && w[5] == 0 && w[7] == 0) {
            o[0] = o[1] = to_sample(descale(w[0], kPass1Bits + 3));
            continue;
        }
        const std::int64_t even = w[0] * (1 << (kConstBits + 2));
        const std::int64_t odd = w[7] * -5906 + w[5] * 6967 + w[3] * -10426 + w[1] * 29692;
        o[0] = to_sample(descale(even + odd, kConstBits + kPass1Bits + 3 + 2));
        o[1] = to_sample(descale(even - odd, kConstBits + kPass1Bits + 3 + 2));
    }
}

void idct_4x4(const std::int16_t* c, const std::int16_t* q, std::uint8_t* out, std::ptrdiff_t stride) {
    // The 4-point transform never reads column (then row) 4.
    std::int32_t ws[4][8];
    for (int col : {0, 1, 2, 3, 5, 6, 7}) {
        auto d = [&](int row) { return static_cast<std::int64_t>(c[row * 8 + col]) * q[row * 8 + col]; };
        if (c[8 + col] == 0 && c[16 + col] == 0 && c[24 + col] == 0 && c[40 + col] == 0 &&
            c[48 + col] == 0 && c[56 + col] == 0) {
            ws[0][col] = ws[1][col] = ws[2][col] = ws[3][col] = static_cast<std::int32_t>(d(0) * (1 << kPass1Bits));
            continue;
        }
        const std::int64_t dc = d(0) * (1 << (kConstBits + 1));
        const std::int64_t rotated = d(2) * 15137 + d(6) * -6270;
        const std::int64_t even0 = dc + rotated, even1 = dc - rotated;
        const std::int64_t odd1 = d(7) * -1730 + d(5) * 11893 + d(3) * -17799 + d(1) * 8697;
        const std::int64_t odd0 = d(7) * -4176 + d(5) * -4926 + d(3) * 7373 + d(1) * 20995;
        constexpr int shift = kConstBits - kPass1Bits + 1;
        ws[0][col] = static_cast<std::int32_t>(descale(even0 + odd0, shift));
        ws[3][col] = static_cast<std::int32_t>(descale(even0 - odd0, shift));
        ws[1][col] = static_cast<std::int32_t>(descale(even1 + odd1, shift));
        ws[2][col] = static_cast<std::int32_t>(descale(even1 - odd1, shift));
    }
    for (int row = 0; row < 4; ++row) {
        const std::int32_t* w32 = ws[row];
        const std::int64_t w[8] = {w32[0], w32[1], w32[2], w32[3], w32[4], w32[5], w32[6], w32[7]};
        std::uint8_t* o = out + row * stride;
        if (w[1] == 0 && w[2] == 0 && w[3] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0) {
            o[0] = o[1] = o[2] = o[3] = to_sample(descale(w[0], kPass1Bits + 3));
            continue;
        }
        const std::int64_t dc = w[0] * (1 << (kConstBits + 1));
        const std::int64_t rotated = w[2] * 15137 + w[6] * -6270;
        const std::int64_t even0 = dc + rotated, even1 = dc - rotated;
        const std::int64_t odd1 = w[7] * -1730 + w[5] * 11893 + w[3] * -17799 + w[1] * 8697;
        const std::int64_t odd0 = w[7] * -4176 + w[5] * -4926 + w[3] * 7373 + w[1] * 20995;
        constexpr int shift = kConstBits + kPass1Bits + 3 + 1;
        o[0] = to_sample(descale(even0 + odd0, shift));
        o[3] = to_sample(descale(even0 - odd0, shift));
        o[1] = to_sample(descale(even1 + odd1, shift));
        o[2] = to_sample(descale(even1 - odd1, shift));
    }
}

#endif  // __SSE2__

using InverseDct = void (*)(const std::int16_t*, const std::int16_t*, std::uint8_t*, std::ptrdiff_t);

// ---------------------------------------------------------------------------------------------
// YCbCr -> RGB: libjpeg's jdcolor.c tables (16-bit fixed point), built once.

struct ColourTables {
    std::array<int, 256> cr_to_r{}, cb_to_b{};
    std::array<std::int32_t, 256> cr_to_g{}, cb_to_g{};
    ColourTables() {
        constexpr int scale_bits = 16;
        constexpr std::int32_t one_half = 1 << (scale_bits - 1);
        auto fix = [](double x) { return static_cast<std::int32_t>(x * (1 << scale_bits) + 0.5); };
        for (int i = 0; i < 256; ++i) {
            const int x = i - 128;
            cr_to_r[i] = (fix(1.40200) * x + one_half) >> scale_bits;
            cb_to_b[i] = (fix(1.77200) * x + one_half) >> scale_bits;
            cr_to_g[i] = -fix(0.71414) * x;
            cb_to_g[i] = -fix(0.34414) * x + one_half;
        }
    }
};
const ColourTables& colour_tables() {
    static const ColourTables tables;
    return tables;
}
inline std::uint8_t clamp_sample(int v) { return static_cast<std::uint8_t>(std::clamp(v, 0, 255)); }

#if defined(__SSE2__)
// The same arithmetic on 16 pixels at a time, in 32-bit lanes built with 16-bit multiplies:
// each table constant is split into a part that fits a signed 16-bit factor and a power of two
// (91881 = 65536 + 26345, 116130 = 131072 - 14942, -46802 = 18734 - 65536; the rounding
// 32768 = 2 * 16384). Converts pixels [0, n) of a row while 16 more remain ahead of them,
// writing each pixel as 4 bytes (the 4th is overwritten by the next pixel, so the last write
// stays inside the row); returns how many pixels it converted.
int ycbcr_to_rgb_16_at_a_time(const std::uint8_t* luma, const std::uint8_t* cb, const std::uint8_t* cr,
                              std::uint8_t* out, int n) {
    const __m128i zero = _mm_setzero_si128(), centre = _mm_set1_epi16(128), two = _mm_set1_epi16(2);
    auto pairs = [](std::int16_t a, std::int16_t b) {
        return _mm_set1_epi32(static_cast<std::int32_t>(static_cast<std::uint16_t>(a)) |
                              static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(b)) << 16));
    };
    const __m128i k_r = pairs(26345, 16384), k_b = pairs(-14942, 16384), k_g = pairs(-22554, 18734);
    const __m128i half = _mm_set1_epi32(32768);
    // Offsets of 8 pixels (16-bit lanes) from their chroma (16-bit, centred).
    auto offsets = [&](__m128i cbx, __m128i crx, __m128i& r, __m128i& g, __m128i& b) {
        __m128i r32[2], g32[2], b32[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m128i crw = h ? _mm_unpackhi_epi16(crx, two) : _mm_unpacklo_epi16(crx, two);
            const __m128i cbw = h ? _mm_unpackhi_epi16(cbx, two) : _mm_unpacklo_epi16(cbx, two);
            const __m128i cr16 = h ? _mm_unpackhi_epi16(zero, crx) : _mm_unpacklo_epi16(zero, crx);  // cr << 16
            const __m128i cb16 = h ? _mm_unpackhi_epi16(zero, cbx) : _mm_unpacklo_epi16(zero, cbx);  // cb << 16
            const __m128i cbcr = h ? _mm_unpackhi_epi16(cbx, crx) : _mm_unpacklo_epi16(cbx, crx);
            r32[h] = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(crw, k_r), cr16), 16);
            b32[h] = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(cbw, k_b), _mm_slli_epi32(cb16, 1)), 16);
            g32[h] = _mm_srai_epi32(_mm_add_epi32(_mm_sub_epi32(_mm_madd_epi16(cbcr, k_g), cr16), half), 16);
        }
        r = _mm_packs_epi32(r32[0], r32[1]);
        g = _mm_packs_epi32(g32[0], g32[1]);
        b = _mm_packs_epi32(b32[0], b32[1]);
    };
    int x = 0;
    for (; x + 16 < n; x += 16) {
        const __m128i y8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(luma + x));
        const __m128i cb8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cb + x));
        const __m128i cr8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cr + x));
        __m128i rgb[2][3];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            const __m128i y16 = h ? _mm_unpackhi_epi8(y8, zero) : _mm_unpacklo_epi8(y8, zero);
            const __m128i cbx = _mm_sub_epi16(h ? _mm_unpackhi_epi8(cb8, zero) : _mm_unpacklo_epi8(cb8, zero), centre);
            const __m128i crx = _mm_sub_epi16(h ? _mm_unpackhi_epi8(cr8, zero) : _mm_unpacklo_epi8(cr8, zero), centre);
            __m128i r, g, b;
            offsets(cbx, crx, r, g, b);
            rgb[h][0] = _mm_add_epi16(y16, r);
            rgb[h][1] = _mm_add_epi16(y16, g);
            rgb[h][2] = _mm_add_epi16(y16, b);
        }
        // Clamp to bytes, then interleave to R G B x per pixel.
        const __m128i r8 = _mm_packus_epi16(rgb[0][0], rgb[1][0]);
        const __m128i g8 = _mm_packus_epi16(rgb[0][1], rgb[1][1]);
        const __m128i b8 = _mm_packus_epi16(rgb[0][2], rgb[1][2]);
        const __m128i rg_lo = _mm_unpacklo_epi8(r8, g8), rg_hi = _mm_unpackhi_epi8(r8, g8);
        const __m128i bx_lo = _mm_unpacklo_epi8(b8, zero), bx_hi = _mm_unpackhi_epi8(b8, zero);
        alignas(16) std::uint32_t pixels[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(pixels), _mm_unpacklo_epi16(rg_lo, bx_lo));
        _mm_store_si128(reinterpret_cast<__m128i*>(pixels + 4), _mm_unpackhi_epi16(rg_lo, bx_lo));
        _mm_store_si128(reinterpret_cast<__m128i*>(pixels + 8), _mm_unpacklo_epi16(rg_hi, bx_hi));
        _mm_store_si128(reinterpret_cast<__m128i*>(pixels + 12), _mm_unpackhi_epi16(rg_hi, bx_hi));
        for (int i = 0; i < 16; ++i) std::memcpy(out + 3 * (x + i), &pixels[i], 4);
    }
    return x;
}
#endif

// ---------------------------------------------------------------------------------------------
// The file

struct Component {
    int id = 0;
    int h = 1, v = 1;          // sampling factors
    int quant_table = 0;
    int dc_table = 0, ac_table = 0;
    int dct_size = 1;          // output samples per block side at this scale (1, 2 or 4)
    InverseDct idct = nullptr;
    std::vector<std::uint8_t> band;  // one MCU row of this component's samples
    std::ptrdiff_t band_stride = 0;
    int last_dc = 0;
};

struct Frame {
    int width = 0, height = 0;
    std::vector<Component> components;
    std::array<std::array<std::int16_t, 64>, 4> quant{};  // natural order, as libjpeg's 16-bit multipliers
    std::array<bool, 4> quant_defined{};
    std::array<HuffmanTable, 4> dc_tables, ac_tables;
    int restart_interval = 0;
    std::vector<int> scan_order;  // component indices in the order the scan interleaves them
};

inline int read_u16(const std::uint8_t* p) { return p[0] << 8 | p[1]; }

// Reads markers from SOI up to and including the SOS header. Returns the first byte of the
// entropy-coded data, or nullptr for anything this decoder leaves to libjpeg-turbo.
const std::uint8_t* read_headers(const std::uint8_t* data, const std::uint8_t* end, Frame& f) {
    if (end - data < 4 || data[0] != 0xFF || data[1] != 0xD8) return nullptr;
    const std::uint8_t* p = data + 2;
    bool saw_frame = false;
    while (true) {
        if (p >= end || *p != 0xFF) return nullptr;  // libjpeg-turbo warns about stray bytes
        while (p < end && *p == 0xFF) ++p;
        if (end - p < 3) return nullptr;
        const int marker = *p++;
        const int length = read_u16(p);
        if (length < 2 || end - p < length) return nullptr;
        const std::uint8_t* seg = p + 2;
        const int seg_len = length - 2;
        p += length;
        switch (marker) {
            case 0xC0: case 0xC1: {  // baseline / extended sequential, Huffman
                if (saw_frame || seg_len < 6 || seg[0] != 8) return nullptr;
                f.height = read_u16(seg + 1);
                f.width = read_u16(seg + 3);
                const int n = seg[5];
                // (libjpeg-turbo refuses sides above 65500)
                if (f.height == 0 || f.width == 0 || f.height > 65500 || f.width > 65500 || (n != 1 && n != 3) ||
                    seg_len != 6 + 3 * n)
                    return nullptr;
                for (int i = 0; i < n; ++i) {
                    Component c;
                    c.id = seg[6 + 3 * i];
                    c.h = seg[7 + 3 * i] >> 4;
                    c.v = seg[7 + 3 * i] & 15;
                    c.quant_table = seg[8 + 3 * i];
                    if (c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.quant_table > 3) return nullptr;
                    for (const Component& other : f.components)
                        if (other.id == c.id) return nullptr;
                    f.components.push_back(std::move(c));
                }
                // Component ids R, G, B without a JFIF marker mean RGB to libjpeg.
                if (n == 3 && f.components[0].id == 'R' && f.components[1].id == 'G' && f.components[2].id == 'B')
                    return nullptr;
                saw_frame = true;
                break;
            }
            case 0xC4: {  // Huffman tables
                const std::uint8_t* s = seg;
                const std::uint8_t* seg_end = seg + seg_len;
                while (s < seg_end) {
                    if (seg_end - s < 17) return nullptr;
                    const int table_class = s[0] >> 4, id = s[0] & 15;
                    if (table_class > 1 || id > 3) return nullptr;
                    int total = 0;
                    for (int i = 1; i <= 16; ++i) total += s[i];
                    if (total > 256 || seg_end - s < 17 + total) return nullptr;
                    HuffmanTable& t = table_class == 0 ? f.dc_tables[id] : f.ac_tables[id];
                    if (!build_huffman_table(s + 1, s + 17, total, table_class == 0, t)) return nullptr;
                    s += 17 + total;
                }
                break;
            }
            case 0xDB: {  // quantisation tables
                const std::uint8_t* s = seg;
                const std::uint8_t* seg_end = seg + seg_len;
                while (s < seg_end) {
                    const int precision = s[0] >> 4, id = s[0] & 15;
                    if (precision > 1 || id > 3) return nullptr;
                    const int bytes = precision ? 128 : 64;
                    if (seg_end - s < 1 + bytes) return nullptr;
                    for (int k = 0; k < 64; ++k) {
                        const int value = precision ? read_u16(s + 1 + 2 * k) : s[1 + k];
                        f.quant[id][kZigzagToNatural[k]] = static_cast<std::int16_t>(value);
                    }
                    f.quant_defined[id] = true;
                    s += 1 + bytes;
                }
                break;
            }
            case 0xDD:  // restart interval
                if (seg_len != 2) return nullptr;
                f.restart_interval = read_u16(seg);
                break;
            case 0xE0:  // JFIF: libjpeg-turbo warns about a major version other than 1
                if (seg_len >= 14 && std::memcmp(seg, "JFIF\0", 5) == 0 && seg[5] != 1) return nullptr;
                break;
            case 0xEE:  // Adobe: its colour transform flag changes the colour space
                if (seg_len >= 5 && std::memcmp(seg, "Adobe", 5) == 0) return nullptr;
                break;
            case 0xDA: {  // start of scan
                const int n = seg_len >= 1 ? seg[0] : 0;
                if (!saw_frame || n != static_cast<int>(f.components.size()) || seg_len != 4 + 2 * n) return nullptr;
                for (int i = 0; i < n; ++i) {
                    const int id = seg[1 + 2 * i];
                    int index = -1;
                    for (size_t c = 0; c < f.components.size(); ++c)
                        if (f.components[c].id == id) index = static_cast<int>(c);
                    if (index < 0 || std::find(f.scan_order.begin(), f.scan_order.end(), index) != f.scan_order.end())
                        return nullptr;
                    Component& c = f.components[index];
                    c.dc_table = seg[2 + 2 * i] >> 4;
                    c.ac_table = seg[2 + 2 * i] & 15;
                    if (c.dc_table > 3 || c.ac_table > 3 || !f.dc_tables[c.dc_table].defined ||
                        !f.ac_tables[c.ac_table].defined || !f.quant_defined[c.quant_table])
                        return nullptr;
                    f.scan_order.push_back(index);
                }
                const std::uint8_t* tail = seg + 1 + 2 * n;
                if (tail[0] != 0 || tail[1] != 63 || tail[2] != 0) return nullptr;  // sequential only
                return p;
            }
            default:
                if ((marker >= 0xE1 && marker <= 0xEF) || marker == 0xFE) break;  // other APPn, comments
                return nullptr;  // progressive, arithmetic, lossless, hierarchical, DNL, ...
        }
    }
}

}  // namespace

bool decode_jpeg_reduced(const unsigned char* data, std::size_t size, int scale_num, cv::Mat& rgb) {
    if (scale_num != 1 && scale_num != 2) return false;
    const std::uint8_t* end = data + size;
    Frame f;
    const std::uint8_t* scan = read_headers(data, end, f);
    if (!scan) return false;

    // libjpeg's choice of DCT size per component: chroma is scaled up in the IDCT (while its
    // sampling allows) so that no upsampling is needed. This decoder takes only layouts where
    // that leaves every component at the output's resolution.
    int max_h = 1, max_v = 1;
    for (const Component& c : f.components) {
        max_h = std::max(max_h, c.h);
        max_v = std::max(max_v, c.v);
    }
    const bool interleaved = f.components.size() > 1;
    int blocks_per_mcu = 0;
    for (const Component& c : f.components) blocks_per_mcu += c.h * c.v;
    if (interleaved && blocks_per_mcu > 10) return false;  // libjpeg-turbo's (and the standard's) limit
    for (Component& c : f.components) {
        int size = scale_num;
        while (size < 8 && (max_h * scale_num) % (c.h * size * 2) == 0 && (max_v * scale_num) % (c.v * size * 2) == 0)
            size *= 2;
        c.dct_size = size;
        if (interleaved && (c.h * size != max_h * scale_num || c.v * size != max_v * scale_num)) return false;
        if (size == 1) c.idct = idct_1x1;
        else if (size == 2) c.idct = idct_2x2;
        else if (size == 4) c.idct = idct_4x4;
        else return false;
    }

    const int out_w = (f.width * scale_num + 7) / 8;
    const int out_h = (f.height * scale_num + 7) / 8;
    // MCU grid: interleaved scans cover max_h x max_v blocks per MCU; a single component's scan
    // is one block per MCU over that component alone.
    const int mcu_w = interleaved ? 8 * max_h : 8, mcu_h = interleaved ? 8 * max_v : 8;
    const int mcus_x = (f.width + mcu_w - 1) / mcu_w;
    const int mcus_y = (f.height + mcu_h - 1) / mcu_h;
    const int band_rows = interleaved ? max_v * scale_num : f.components[0].dct_size;
    for (Component& c : f.components) {
        const int blocks_x = interleaved ? mcus_x * c.h : mcus_x;
        const int blocks_y = interleaved ? c.v : 1;
        c.band_stride = static_cast<std::ptrdiff_t>(blocks_x) * c.dct_size;
        c.band.assign(static_cast<size_t>(c.band_stride) * blocks_y * c.dct_size, 0);
    }

    rgb.create(out_h, out_w, CV_8UC3);
    const ColourTables& colour = colour_tables();
    BitReader in;
    in.next = scan;
    in.end = end;
    int restarts_left = f.restart_interval;
    int next_restart = 0;
    alignas(64) std::int16_t blocks[10][kBlockSlots];  // one MCU's (at most 10, checked above)

    for (int my = 0; my < mcus_y; ++my) {
        for (int mx = 0; mx < mcus_x; ++mx) {
            if (f.restart_interval) {
                if (restarts_left == 0) {
                    // The interval's data must end within the last byte before RSTn.
                    if (in.overran() || in.count - in.padding >= 8) return false;
                    const std::uint8_t* m = in.next;
                    if (m >= end || *m != 0xFF) return false;
                    while (m < end && *m == 0xFF) ++m;
                    if (m >= end || *m != 0xD0 + next_restart) return false;
                    in = BitReader{};
                    in.next = m + 1;
                    in.end = end;
                    next_restart = (next_restart + 1) & 7;
                    for (Component& c : f.components) c.last_dc = 0;
                    restarts_left = f.restart_interval;
                }
                --restarts_left;
            }
            // All of the MCU's blocks are decoded before any is transformed: the transforms
            // read a block with 16-byte loads right after the decoder's 2-byte stores, and a
            // load that spans several recent stores waits until they reach the cache. With
            // the rest of the MCU decoded in between, they have.
            int decoded = 0;
            for (int index : f.scan_order) {
                Component& c = f.components[index];
                const HuffmanTable& dc_table = f.dc_tables[c.dc_table];
                const HuffmanTable& ac_table = f.ac_tables[c.ac_table];
                const int blocks_in_mcu = interleaved ? c.h * c.v : 1;
                for (int b = 0; b < blocks_in_mcu; ++b, ++decoded) {
                    std::int16_t* block = blocks[decoded];
                    clear_block(block);
                    const bool ok = c.dct_size > 1 ? decode_block<true>(in, dc_table, ac_table, c.last_dc, block)
                                                   : decode_block<false>(in, dc_table, ac_table, c.last_dc, block);
                    if (!ok) return false;
                }
            }
            decoded = 0;
            for (int index : f.scan_order) {
                Component& c = f.components[index];
                const std::int16_t* quant = f.quant[c.quant_table].data();
                const int blocks_h = interleaved ? c.h : 1, blocks_v = interleaved ? c.v : 1;
                for (int by = 0; by < blocks_v; ++by) {
                    for (int bx = 0; bx < blocks_h; ++bx, ++decoded) {
                        const int x = ((interleaved ? mx * c.h : mx) + bx) * c.dct_size;
                        c.idct(blocks[decoded], quant,
                               c.band.data() + static_cast<std::ptrdiff_t>(by) * c.dct_size * c.band_stride + x,
                               c.band_stride);
                    }
                }
            }
        }
        if (in.overran()) return false;
        // Colour-convert this MCU row's output rows.
        const int y0 = my * band_rows;
        const int rows = std::min(band_rows, out_h - y0);
        for (int r = 0; r < rows; ++r) {
            std::uint8_t* o = rgb.ptr<std::uint8_t>(y0 + r);
            const std::uint8_t* luma = f.components[0].band.data() + r * f.components[0].band_stride;
            if (!interleaved) {
                for (int x = 0; x < out_w; ++x) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = luma[x];
                continue;
            }
            const std::uint8_t* cb = f.components[1].band.data() + r * f.components[1].band_stride;
            const std::uint8_t* cr = f.components[2].band.data() + r * f.components[2].band_stride;
            int x = 0;
#if defined(__SSE2__)
            x = ycbcr_to_rgb_16_at_a_time(luma, cb, cr, o, out_w);
#endif
            for (; x < out_w; ++x) {
                const int y = luma[x];
                o[3 * x] = clamp_sample(y + colour.cr_to_r[cr[x]]);
                o[3 * x + 1] = clamp_sample(y + ((colour.cb_to_g[cb[x]] + colour.cr_to_g[cr[x]]) >> 16));
                o[3 * x + 2] = clamp_sample(y + colour.cb_to_b[cb[x]]);
            }
        }
    }

    // The scan must end at the end-of-image marker, with less than a byte of data unused.
    if (in.overran() || in.count - in.padding >= 8) return false;
    const std::uint8_t* m = in.next;
    if (m >= end || *m != 0xFF) return false;
    while (m < end && *m == 0xFF) ++m;
    return m < end && *m == 0xD9;
}

}  // namespace whisker::data
