/* bcryptprimitives.dll for Wine 8 (Debian 12's), which lacks it: Rust's standard library (1.78
 * and later) takes its random numbers from ProcessPrng there, and the exporter does not start
 * without it. scripts/test-windows.sh builds this with mingw-w64 and puts it beside the exe under
 * test; Windows 10 and 11 have their own. ProcessPrng here is RtlGenRandom (advapi32), which
 * Wine has. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
