// Included first by every source compiled once per instruction-set variant
// (see capability.h): their code lives in namespace a2mamba::cpu::<variant>,
// so that the variants' functions, inline ones included, never share a symbol.
#pragma once

#ifndef A2MAMBA_CPU_VARIANT
#error "CPU kernel sources are compiled once per variant, with A2MAMBA_CPU_VARIANT defined (see CMakeLists.txt)"
#endif
