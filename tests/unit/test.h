/* A minimal unit-test harness: CHECK counts, TEST_MAIN prints the closing line 'N passed, N failed'.
 * A test file may #include the .c it tests to reach its static functions. */
#ifndef GG_TEST_H
#define GG_TEST_H
#include <stdio.h>
#include <string.h>

static int gg_test_passed, gg_test_failed;

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (cond) {                                                                                                                \
            gg_test_passed++;                                                                                                      \
        } else {                                                                                                                   \
            gg_test_failed++;                                                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                               \
        }                                                                                                                          \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                                         \
    do {                                                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                                        \
        if (a_ == b_) {                                                                                                            \
            gg_test_passed++;                                                                                                      \
        } else {                                                                                                                   \
            gg_test_failed++;                                                                                                      \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_);                                 \
        }                                                                                                                          \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                                                         \
    do {                                                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                                                           \
        if (a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0) {                                                                     \
            gg_test_passed++;                                                                                                      \
        } else {                                                                                                                   \
            gg_test_failed++;                                                                                                      \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, a_ ? a_ : "(null)",                  \
                    b_ ? b_ : "(null)");                                                                                           \
        }                                                                                                                          \
    } while (0)

#define TEST_MAIN(...)                                                                                                             \
    int main(void)                                                                                                                 \
    {                                                                                                                              \
        void (*tests_[])(void) = {__VA_ARGS__};                                                                                    \
        for (size_t i_ = 0; i_ < sizeof(tests_) / sizeof(tests_[0]); i_++)                                                         \
            tests_[i_]();                                                                                                          \
        printf("%d passed, %d failed\n", gg_test_passed, gg_test_failed);                                                          \
        return gg_test_failed != 0;                                                                                                \
    }
#endif
