#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("nanorag %s\n", NR_VERSION);
    return 0;
}
