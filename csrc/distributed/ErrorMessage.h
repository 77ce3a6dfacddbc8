// The message of an error as users should read it: c10 errors without their C++ backtrace.
#pragma once

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace torch_npu_sim::dist {

inline std::string message_of(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

inline std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& err) {
    return message_of(err);
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace torch_npu_sim::dist
