#!/usr/bin/env bash
# This CPU's AVX2 FMA peak (ten independent chains) and the packed F16 tile's speed on data in L1 (six activation
# rows, two converts and six broadcasts for twelve FMAs a column: quant/packed_float.rs's AVX2 loop written in C),
# one core each, in GFLOP/s. The figures BENCHMARKS.md's F16/BF16-on-AVX2 section quotes. Needs gcc; x86-64 AVX2.
#
#   bench/fma-peak.sh
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/peak.c" <<'C'
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
#define COLS 896
__attribute__((noinline)) static void tile_f16(const unsigned short*w,const float*const y[6],float*out){
  __m256 a[6][2]; for(int t=0;t<6;t++){a[t][0]=_mm256_setzero_ps();a[t][1]=_mm256_setzero_ps();}
  for(int k=0;k<COLS;k++){
    __m256 lo=_mm256_cvtph_ps(_mm_load_si128((const __m128i*)(w+k*16)));
    __m256 hi=_mm256_cvtph_ps(_mm_load_si128((const __m128i*)(w+k*16+8)));
    for(int t=0;t<6;t++){__m256 x=_mm256_broadcast_ss(y[t]+k);a[t][0]=_mm256_fmadd_ps(lo,x,a[t][0]);a[t][1]=_mm256_fmadd_ps(hi,x,a[t][1]);}
  }
  for(int t=0;t<6;t++){_mm256_storeu_ps(out+16*t,a[t][0]);_mm256_storeu_ps(out+16*t+8,a[t][1]);}
}
int main(int argc,char**argv){
  (void)argv;
  __m256 b=_mm256_set1_ps(0.999f),c=_mm256_set1_ps(0.001f);
  __m256 a0=_mm256_set1_ps(argc),a1=a0,a2=a0,a3=a0,a4=a0,a5=a0,a6=a0,a7=a0,a8=a0,a9=a0;
  long n=200000000; double t0=now();
  for(long j=0;j<n;j++){
#define F(x) x=_mm256_fmadd_ps(x,b,c); __asm__ volatile("" : "+x"(x));
    F(a0)F(a1)F(a2)F(a3)F(a4)F(a5)F(a6)F(a7)F(a8)F(a9)}
  double t1=now(); __m256 r=a0+a1+a2+a3+a4+a5+a6+a7+a8+a9;
  printf("FMA peak: %.1f GFLOP/s a core (%g)\n",n*10*16.0/(t1-t0)/1e9,r[0]);
  static unsigned short w[COLS*16] __attribute__((aligned(64))); static float ys[6*COLS]; float out[96];
  for(int i=0;i<COLS*16;i++)w[i]=0x3c00; for(int i=0;i<6*COLS;i++)ys[i]=0.001f;
  const float*y[6]; for(int t=0;t<6;t++)y[t]=ys+t*COLS;
  long m=200000; t0=now(); for(long i=0;i<m;i++)tile_f16(w,y,out); t1=now();
  printf("F16 tile, six rows, in L1: %.1f GFLOP/s a core (%g)\n",m*COLS*6*16*2.0/(t1-t0)/1e9,out[0]);
  return 0;
}
C
gcc -O3 -funroll-loops -mavx2 -mfma -mf16c "$tmp/peak.c" -o "$tmp/peak"
"$tmp/peak"
