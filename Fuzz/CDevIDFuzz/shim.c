// SwiftPM needs a source file for a C target; the declaration in include/CDevIDFuzz.h is all this target provides.
#include "CDevIDFuzz.h"
