#include "common/err.h"

const char *rt_strerror(int rc)
{
	switch (rc) {
	case RT_OK:
		return "success";
#define RT_ERR_TEXT(name, code, text)                                                    \
	case RT_E##name:                                                                 \
		return text;
		RT_ERRNO_MAP(RT_ERR_TEXT)
#undef RT_ERR_TEXT
	}
	return "unknown error";
}

const char *rt_err_name(int rc)
{
	switch (rc) {
	case RT_OK:
		return "RT_OK";
#define RT_ERR_NAME(name, code, text)                                                    \
	case RT_E##name:                                                                 \
		return "RT_E" #name;
		RT_ERRNO_MAP(RT_ERR_NAME)
#undef RT_ERR_NAME
	}
	return "RT_EUNKNOWN";
}
