// The PKCS#11 (Cryptoki) C header as Debian's libp11-kit-dev ships it: types, constants and the function list only.
// No PKCS#11 library is linked: DevIDPKCS11 loads the module a `pkcs11:` URI names (module-path) with dlopen.
#include <p11-kit-1/p11-kit/pkcs11.h>
