/* Forced-included into ggml-cpu/amx/mmq.cpp when building with gcc < 13.
 *
 * gcc 12's amxtileintrin.h declares _tile_loadconfig's operand as one 8-byte pointer
 * ("m" (*(const void **)p)), so the compiler treats bytes 8..63 of the 64-byte tile
 * configuration as unread and drops the stores that fill them. ldtilecfg then loads a
 * configuration with zero rows and the first tilezero raises SIGILL. gcc 13 switched to a
 * builtin. Here the operand is declared as the whole 64-byte block, which keeps the stores.
 */
#ifndef LLAMAPROC_AMX_TILECFG_FIX_H
#define LLAMAPROC_AMX_TILECFG_FIX_H
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13 && defined(__x86_64__)
#include <immintrin.h>
#ifdef __AMX_TILE__
typedef struct { unsigned char bytes[64]; } llamaproc_amx_tilecfg_block;
static __inline__ __attribute__((__always_inline__)) void llamaproc_tile_loadconfig(const void * config) {
    __asm__ volatile("ldtilecfg\t%X0" ::"m"(*(const llamaproc_amx_tilecfg_block *) config));
}
static __inline__ __attribute__((__always_inline__)) void llamaproc_tile_storeconfig(void * config) {
    __asm__ volatile("sttilecfg\t%X0" : "=m"(*(llamaproc_amx_tilecfg_block *) config));
}
#undef _tile_loadconfig
#undef _tile_storeconfig
#define _tile_loadconfig(p)  llamaproc_tile_loadconfig(p)
#define _tile_storeconfig(p) llamaproc_tile_storeconfig(p)
#endif
#endif
#endif
