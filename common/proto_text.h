// Strings in protobuf messages that came from outside the program (file and
// folder names read from disk, exception texts): proto3 string fields must be
// well-formed UTF-8, or the peer fails to parse the whole message, and a
// message that is sent again after every reconnect would break every stream.
#pragma once

#include <google/protobuf/message.h>

namespace tl {

// Rewrites every string field of `message`, nested messages and repeated
// fields included, with its malformed bytes escaped (EscapeMalformedUtf8).
// Map fields are left alone (their keys are the program's own).
void EscapeMalformedUtf8In(google::protobuf::Message& message);

}  // namespace tl
