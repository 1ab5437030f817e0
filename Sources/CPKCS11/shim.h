// The PKCS#11 (Cryptoki) C header as Debian's libp11-kit-dev ships it: types, constants and the function list only.
// No PKCS#11 library is linked: DevIDPKCS11 loads the module a `pkcs11:` URI names (module-path) with dlopen.
// Without libp11-kit-dev, the copy beside this file (p11-kit 0.24.1's pkcs11.h, whose notice permits copying) is used,
// so that `swift build` needs no extra package.
#if __has_include(<p11-kit-1/p11-kit/pkcs11.h>)
#include <p11-kit-1/p11-kit/pkcs11.h>
#else
#include "pkcs11-p11-kit.h"
#endif
