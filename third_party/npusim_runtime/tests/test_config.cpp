// The runtime's configuration: the parsers of the NPUSIM_* variables, and what the C API
// reports for the environment it was started with. Run by tests/runtime/test_runtime_config.py:
//   test_config unit     parser unit tests ("config tests passed")
//   test_config report   one line describing the configuration the C API sees
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "npusim_runtime.h"
#include "../src/config.h"

using namespace npusim_rt;

static int failures = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

static bool memory_is(const char* text, size_t expected) {
  size_t out = 12345;
  bool ok = parse_device_memory(text, &out);
  if (!ok || out != expected) std::printf("  parse_device_memory('%s') -> %d, %zu\n", text, ok, out);
  return ok && out == expected;
}

static bool memory_rejected(const char* text) {
  size_t out = 12345;
  bool ok = parse_device_memory(text, &out);
  if (ok || out != 12345) std::printf("  parse_device_memory('%s') accepted: %zu\n", text, out);
  return !ok && out == 12345;
}

static void test_device_memory() {
  const size_t KiB = 1024, MiB = KiB << 10, GiB = MiB << 10, TiB = GiB << 10, PiB = TiB << 10;
  EXPECT(memory_is("1073741824", GiB));
  EXPECT(memory_is("1", 1));
  EXPECT(memory_is("512MiB", 512 * MiB));
  EXPECT(memory_is("16GiB", 16 * GiB));
  EXPECT(memory_is("16gib", 16 * GiB));
  EXPECT(memory_is("16G", 16 * GiB));
  EXPECT(memory_is("16GB", 16 * GiB));
  EXPECT(memory_is(" 16 GiB\n", 16 * GiB));
  EXPECT(memory_is("100b", 100));
  EXPECT(memory_is("4KiB", 4 * KiB));
  EXPECT(memory_is("2TiB", 2 * TiB));
  EXPECT(memory_is("3PiB", 3 * PiB));
  EXPECT(memory_is("1.5GiB", GiB + GiB / 2));
  EXPECT(memory_is("0.5KiB", 512));
  EXPECT(memory_is(".5KiB", 512));
  EXPECT(memory_is("0.001KiB", 1));  // 1.024 bytes: whole bytes, rounded down
  EXPECT(memory_is("007MiB", 7 * MiB));
  EXPECT(memory_is("8191PiB", 8191 * PiB));  // the largest whole number of PiB below 2^63
  EXPECT(memory_is("9223372036854775807", size_t(INT64_MAX)));
  for (const char* bad : {"", "   ", "0", "0GiB", "0.0001", "-1", "-1GiB", "+1GiB", "nan", "NaN", "inf",
                          "infinity", "1e30", "1e9", "1E3", "0x100", "16GiBx", "16 GiB x", "16GiB16", "GiB",
                          "1.", ".", "1..5GiB", "1.5.2", "16 G i B", "12abc", "abc", "16EiB", "1 2",
                          "9223372036854775808", "99999999999999999999999", "8192PiB", "8388608TiB",
                          "18446744073709551616", "1.0000000000000000001KiB", "\t", "16\x01GiB"})
    EXPECT(memory_rejected(bad));
}

static void test_device_count() {
  int n = -1;
  EXPECT(parse_device_count("0", &n) && n == 0);
  EXPECT(parse_device_count("8", &n) && n == 8);
  EXPECT(parse_device_count("64", &n) && n == 64);
  EXPECT(parse_device_count(" 3 ", &n) && n == 3);
  EXPECT(parse_device_count("007", &n) && n == 7);
  for (const char* bad : {"", " ", "65", "100", "-1", "+1", "abc", "3abc", "3.0", "1e1", "0x10", "lots",
                          "99999999999999999999", "4 4"}) {
    n = -7;
    EXPECT(!parse_device_count(bad, &n) && n == -7);
  }
}

static void test_device_name() {
  std::string name = "unchanged";
  EXPECT(parse_device_name("TestChip", &name) && name == "TestChip");
  EXPECT(parse_device_name("x", &name) && name == "x");
  std::string longest(63, 'a'), too_long(64, 'a');
  EXPECT(parse_device_name(longest.c_str(), &name) && name == longest);
  name = "unchanged";
  EXPECT(!parse_device_name(too_long.c_str(), &name) && name == "unchanged");
  EXPECT(!parse_device_name("", &name) && name == "unchanged");
  EXPECT(!parse_device_name("bad\nname", &name) && name == "unchanged");
  EXPECT(parse_device_name("Pu\xc3\xb1" "o NPU", &name));  // UTF-8 is fine
}

static std::map<std::string, std::string> fake_env;
static const char* fake_lookup(const char* name) {
  auto it = fake_env.find(name);
  return it == fake_env.end() ? nullptr : it->second.c_str();
}

static void test_parse_config() {
  fake_env.clear();
  Config c = parse_config(&fake_lookup);
  EXPECT(c.error.empty() && c.device_count == 8 && c.device_memory == (size_t(16) << 30) && c.device_name == "NPUSim-1");

  fake_env = {{"NPUSIM_DEVICE_COUNT", "0"}};
  c = parse_config(&fake_lookup);
  EXPECT(c.error.empty() && c.device_count == 0);

  fake_env = {{"NPUSIM_DEVICE_COUNT", "abc"}};
  c = parse_config(&fake_lookup);
  EXPECT(c.device_count == 0);
  EXPECT(c.error.find("NPUSIM_DEVICE_COUNT") != std::string::npos && c.error.find("'abc'") != std::string::npos);

  fake_env = {{"NPUSIM_DEVICE_MEMORY", "16GiBx"}, {"NPUSIM_DEVICE_NAME", std::string(70, 'n')}};
  c = parse_config(&fake_lookup);
  EXPECT(c.device_count == 0);
  EXPECT(c.error.find("NPUSIM_DEVICE_MEMORY") != std::string::npos && c.error.find("'16GiBx'") != std::string::npos);
  EXPECT(c.error.find("NPUSIM_DEVICE_NAME") != std::string::npos && c.error.find("70 bytes") != std::string::npos);
  EXPECT(c.error.find("NPUSIM_DEVICE_COUNT") == std::string::npos);

  fake_env = {{"NPUSIM_DEVICE_NAME", "line\nbreak"}};
  c = parse_config(&fake_lookup);
  EXPECT(c.error.find("'line\\x0abreak'") != std::string::npos);  // shown escaped

  fake_env = {{"NPUSIM_DEVICE_COUNT", "2"}, {"NPUSIM_DEVICE_MEMORY", "1.5MiB"}, {"NPUSIM_DEVICE_NAME", "Chip"}};
  c = parse_config(&fake_lookup);
  EXPECT(c.error.empty() && c.device_count == 2 && c.device_memory == 3 * (size_t(1) << 19) && c.device_name == "Chip");
}

static int report() {
  int count = -1;
  npusimError_t rc = npusimGetDeviceCount(&count);
  const char* error = npusimGetConfigurationError();
  std::printf("count=%d rc=%d", count, static_cast<int>(rc));
  if (count > 0) {
    npusimDeviceProp prop;
    npusimError_t prc = npusimGetDeviceProperties(&prop, count - 1);
    std::printf(" props_rc=%d memory=%zu name=%s", static_cast<int>(prc), prop.totalGlobalMem, prop.name);
  } else {
    void* p = nullptr;
    std::printf(" malloc_rc=%d set_device_rc=%d", static_cast<int>(npusimMalloc(&p, 16)),
                static_cast<int>(npusimSetDevice(0)));
  }
  std::printf(" error=%s\n", error ? error : "(none)");
  if (error) std::printf("error_string=%s\n", npusimGetErrorString(npusimErrorInvalidConfiguration));
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "report") == 0) return report();
  test_device_memory();
  test_device_count();
  test_device_name();
  test_parse_config();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return 1;
  }
  std::printf("config tests passed\n");
  return 0;
}
