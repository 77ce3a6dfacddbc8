// Deliberate bugs, built with the same sanitizer flags as the runtime, so that a clean
// sanitizer run of the runtime means "no bug found", not "no instrumentation".
// Usage: sanitizer_canary race | use-after-free | overflow
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

static int shared_counter = 0;  // written by two threads without synchronisation

static void bump_unsynchronised() {
  for (int i = 0; i < 1000; ++i) ++shared_counter;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (!std::strcmp(mode, "race")) {
    std::thread a(bump_unsynchronised), b(bump_unsynchronised);
    a.join();
    b.join();
    std::printf("counter %d\n", shared_counter);
  } else if (!std::strcmp(mode, "use-after-free")) {
    int* p = static_cast<int*>(std::malloc(4 * sizeof(int)));
    int* volatile dangling = p;  // hidden from the compiler's own use-after-free warning
    std::free(p);
    volatile int value = dangling[1];
    std::printf("value %d\n", value);
  } else if (!std::strcmp(mode, "overflow")) {
    volatile int big = INT_MAX;
    int wrapped = big + argc;  // signed overflow: undefined behaviour
    std::printf("wrapped %d\n", wrapped);
  } else {
    std::printf("unknown mode '%s'\n", mode);
    return 2;
  }
  std::printf("canary finished undetected\n");
  return 0;
}
