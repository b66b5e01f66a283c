/*
 * A main() for the fuzz harness where libFuzzer is not available (the ARM64 cross
 * build run under qemu-aarch64): each file named on the command line is passed once
 * to LLVMFuzzerTestOneInput, so the seed corpus is replayed through every path the
 * emulated CPU has, with the harness's portable oracle.  No mutation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        uint8_t *buf = malloc(1 << 20);
        size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
        fclose(f);
        if (buf == NULL)
            return 1;
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
    }
    printf("replay: %d inputs\n", argc - 1);
    return 0;
}
