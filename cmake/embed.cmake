# Turns a file into a C source holding its bytes: `const unsigned char NAME[]` and
# `const size_t NAME_len` (without a terminating NUL). Run at build time by the proxy's target
# (CMakeLists.txt), so the dashboard page is edited as HTML and served from the binary.
#   cmake -DIN=page.html -DOUT=page.c -DNAME=px_dashboard_html -P cmake/embed.cmake
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from ${IN} by cmake/embed.cmake: do not edit. */\n"
  "#include <stddef.h>\n"
  "extern const unsigned char ${NAME}[];\nextern const size_t ${NAME}_len;\n"
  "const unsigned char ${NAME}[] = {\n${bytes}\n};\n"
  "const size_t ${NAME}_len = ${len};\n")
