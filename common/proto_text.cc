#include "common/proto_text.h"

#include <string>
#include <vector>

#include "common/text.h"

namespace tl {

void EscapeMalformedUtf8In(google::protobuf::Message& message) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->is_map()) continue;
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection.FieldSize(message, field); ++i) {
          const std::string text = reflection.GetRepeatedString(message, field, i);
          const std::string valid = EscapeMalformedUtf8(text);
          if (valid != text) reflection.SetRepeatedString(&message, field, i, valid);
        }
      } else {
        const std::string text = reflection.GetString(message, field);
        const std::string valid = EscapeMalformedUtf8(text);
        if (valid != text) reflection.SetString(&message, field, valid);
      }
    } else if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (field->is_repeated()) {
        for (int i = 0; i < reflection.FieldSize(message, field); ++i) {
          EscapeMalformedUtf8In(*reflection.MutableRepeatedMessage(&message, field, i));
        }
      } else {
        EscapeMalformedUtf8In(*reflection.MutableMessage(&message, field));
      }
    }
  }
}

}  // namespace tl
