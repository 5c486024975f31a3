// The files of a tests/data/*.cpp oracle: its last two arguments, IN (an int32 count of cases, then the cases) and OUT.
#include <cstdio>

struct OracleFiles {
    FILE* in = nullptr;
    FILE* out = nullptr;
    int count = 0;
    ~OracleFiles() {
        if (in) fclose(in);
        if (out) fclose(out);
    }
};

// Opens IN and OUT, the last two of the `args` arguments that USAGE names, and reads the count of cases.  Returns
// 0, or the exit status: 2 for other arguments (after a usage line), 1 when a file cannot be opened or read.
inline int open_oracle_files(int argc, char** argv, int args, const char* usage, OracleFiles& files)
{
    if (argc != args + 1) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        return 2;
    }
    files.in = fopen(argv[argc - 2], "rb");
    files.out = fopen(argv[argc - 1], "wb");
    return files.in && files.out && fread(&files.count, 4, 1, files.in) == 1 ? 0 : 1;
}
