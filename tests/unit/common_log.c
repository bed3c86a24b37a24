/* Tests common/log.c: level parsing and filtering. */
#include "../../common/log.c"
#include "test.h"

static void test_levels(void)
{
    CHECK_EQ_INT(gg_log_set_level("debug"), 0);
    CHECK_EQ_INT(gg_log_level, GG_LOG_DEBUG);
    CHECK_EQ_INT(gg_log_set_level("warn"), 0);
    CHECK_EQ_INT(gg_log_level, GG_LOG_WARN);
    CHECK_EQ_INT(gg_log_set_level("loud"), -EINVAL);
    CHECK_EQ_INT(gg_log_level, GG_LOG_WARN);
}

TEST_MAIN(test_levels)
