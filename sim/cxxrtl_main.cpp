// Driver for the compiled (CXXRTL) simulation of LogicNetCore; built by lgn_fpga/verify/cxxrtl.py.
//
// The design (Yosys `write_cxxrtl` output for Amaranth module "top") is included below;
// every width comes from the generated port types, so this one file drives any net.
//
// usage: sim STIMULUS OUTPUTS
//
// STIMULUS: header "LGNS" u32 in_bytes, then one record per cycle:
//           u8 in_valid, in_bytes bytes of in_bits (bit i = byte i/8, bit i%8).
// OUTPUTS:  header "LGNO" u32 class_bytes(=4) u32 score_bytes, then one record per cycle
//           in which out_valid is high (cycles counted from 0, one per stimulus record):
//           u64 cycle,
//           u32 out_class, score_bytes bytes of out_scores (class c's score = bits
//           [c*w, (c+1)*w)).
//
// Cycle t = set inputs with clk low, evaluate, read the outputs (those of cycle t), raise
// clk, evaluate (the edge that ends cycle t). Cycle numbers match the Amaranth testbench in
// lgn_fpga/verify/simulate.py, which reads cycle t + 1 right after the edge ending cycle t.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include LGN_DESIGN

using top_t = cxxrtl_design::p_top;

template<size_t Bits>
static void load_bytes(cxxrtl::value<Bits> &value, const uint8_t *bytes, size_t count) {
	using chunk_t = typename cxxrtl::value<Bits>::chunk::type;
	constexpr size_t chunk_bytes = sizeof(chunk_t);
	for (size_t c = 0; c < cxxrtl::value<Bits>::chunks; c++) {
		chunk_t word = 0;
		for (size_t b = 0; b < chunk_bytes; b++) {
			size_t at = c * chunk_bytes + b;
			if (at < count)
				word |= chunk_t(bytes[at]) << (8 * b);
		}
		value.data[c] = word;
	}
}

// Ports come out of write_cxxrtl as value<N> or wire<N> (when registered); read either.
template<size_t Bits>
static const cxxrtl::value<Bits> &current(const cxxrtl::value<Bits> &value) { return value; }
template<size_t Bits>
static const cxxrtl::value<Bits> &current(const cxxrtl::wire<Bits> &wire) { return wire.curr; }

template<size_t Bits>
static cxxrtl::value<Bits> &next(cxxrtl::value<Bits> &value) { return value; }
template<size_t Bits>
static cxxrtl::value<Bits> &next(cxxrtl::wire<Bits> &wire) { return wire.next; }

template<size_t Bits>
static void store_bytes(const cxxrtl::value<Bits> &value, uint8_t *bytes, size_t count) {
	using chunk_t = typename cxxrtl::value<Bits>::chunk::type;
	constexpr size_t chunk_bytes = sizeof(chunk_t);
	for (size_t at = 0; at < count; at++)
		bytes[at] = uint8_t(value.data[at / chunk_bytes] >> (8 * (at % chunk_bytes)));
}

static int fail(const char *message) {
	std::fprintf(stderr, "cxxrtl driver: %s\n", message);
	return 2;
}

int main(int argc, char **argv) {
	if (argc != 3)
		return fail("usage: sim STIMULUS OUTPUTS");
	FILE *in = std::fopen(argv[1], "rb");
	if (!in)
		return fail("cannot open the stimulus file");
	FILE *out = std::fopen(argv[2], "wb");
	if (!out)
		return fail("cannot open the outputs file");

	top_t top;
	constexpr size_t in_bytes = (decltype(top.p_in__bits)::bits + 7) / 8;
	constexpr size_t score_bytes = (decltype(top.p_out__scores)::bits + 7) / 8;
	static_assert(decltype(top.p_out__class)::bits <= 32, "out_class wider than 32 bits");

	char magic[4];
	uint32_t file_in_bytes;
	if (std::fread(magic, 1, 4, in) != 4 || std::memcmp(magic, "LGNS", 4) != 0 ||
	    std::fread(&file_in_bytes, 4, 1, in) != 1)
		return fail("stimulus file has no LGNS header");
	if (file_in_bytes != in_bytes)
		return fail("stimulus input width does not match the compiled design");

	const uint32_t header[2] = {4, uint32_t(score_bytes)};
	std::fwrite("LGNO", 1, 4, out);
	std::fwrite(header, 4, 2, out);

	std::vector<uint8_t> record(1 + in_bytes);
	std::vector<uint8_t> scores(score_bytes);
	next(top.p_clk).set<bool>(false);
	next(top.p_rst).set<bool>(false);
	// Outputs are read after the low-clock evaluation of each cycle: CXXRTL's step() after a
	// rising edge commits the registers but may leave outputs that are combinational functions
	// of them (out_class) one evaluation behind; the next evaluation settles them.
	auto emit_outputs = [&](uint64_t cycle) {
		if (!current(top.p_out__valid).get<bool>())
			return;
		uint32_t klass = current(top.p_out__class).get<uint32_t>();
		store_bytes(current(top.p_out__scores), scores.data(), score_bytes);
		std::fwrite(&cycle, 8, 1, out);
		std::fwrite(&klass, 4, 1, out);
		std::fwrite(scores.data(), 1, score_bytes, out);
	};
	uint64_t cycle = 0;
	for (;; cycle++) {
		size_t got = std::fread(record.data(), 1, record.size(), in);
		if (got == 0)
			break;
		if (got != record.size())
			return fail("stimulus file ends inside a record");
		next(top.p_in__valid).set<bool>(record[0] != 0);
		load_bytes(next(top.p_in__bits), record.data() + 1, in_bytes);
		next(top.p_clk).set<bool>(false);
		top.step();
		emit_outputs(cycle);
		next(top.p_clk).set<bool>(true);
		top.step();
	}
	next(top.p_clk).set<bool>(false);
	top.step();
	emit_outputs(cycle);
	if (std::fclose(out) != 0)
		return fail("cannot write the outputs file");
	std::fclose(in);
	return 0;
}
