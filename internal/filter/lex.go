package filter

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokWord           // bare word: a field, a keyword or an unquoted value
	tokString         // double-quoted string; text is the unescaped content
	tokOp             // = == != < <= > >=
	tokLParen
	tokRParen
	tokComma
)

type token struct {
	kind tokKind
	text string
	pos  int // 1-based rune column
}

// lexer produces tokens on demand, so a syntax error early in the input is
// reported before a lexical error later in it.
type lexer struct {
	src string
	off int // byte offset of the next rune
	col int // rune column of the next rune, 1-based
}

// peekRune returns the next rune and its width; width 0 at the end.
func (l *lexer) peekRune() (rune, int) {
	if l.off >= len(l.src) {
		return 0, 0
	}
	if c := l.src[l.off]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(l.src[l.off:])
}

func (l *lexer) skip(width int) {
	l.off += width
	l.col++
}

func (l *lexer) next() (token, *Error) {
	r, w := l.peekRune()
	for w > 0 && isSpace(r) {
		l.skip(w)
		r, w = l.peekRune()
	}
	start, pos := l.off, l.col
	switch {
	case w == 0:
		return token{kind: tokEOF, pos: pos}, nil
	case r == utf8.RuneError && w == 1:
		return token{}, errorf(pos, "invalid UTF-8")
	case r == '"':
		return l.quoted()
	case isWordRune(r):
		for w > 0 && isWordRune(r) {
			l.skip(w)
			r, w = l.peekRune()
		}
		return token{kind: tokWord, text: l.src[start:l.off], pos: pos}, nil
	}
	l.skip(w)
	kind := tokOp
	switch r {
	case '(':
		kind = tokLParen
	case ')':
		kind = tokRParen
	case ',':
		kind = tokComma
	case '<', '>', '=':
		if n, _ := l.peekRune(); n == '=' {
			l.skip(1)
		}
	case '!':
		if n, _ := l.peekRune(); n != '=' {
			return token{}, errorf(pos, `unexpected "!" (did you mean "!=" or "not"?)`)
		}
		l.skip(1)
	default:
		return token{}, errorf(pos, "unexpected character %q", r)
	}
	return token{kind: kind, text: l.src[start:l.off], pos: pos}, nil
}

// quoted lexes a double-quoted string starting at the opening quote.
func (l *lexer) quoted() (token, *Error) {
	pos := l.col
	l.skip(1)
	start := l.off
	var b strings.Builder // used only once an escape is seen
	escaped := false
	for {
		r, w := l.peekRune()
		switch {
		case w == 0:
			return token{}, errorf(pos, "unterminated string")
		case r == utf8.RuneError && w == 1:
			return token{}, errorf(l.col, "invalid UTF-8")
		case r == '"':
			text := l.src[start:l.off]
			if escaped {
				text = b.String()
			}
			l.skip(1)
			return token{kind: tokString, text: text, pos: pos}, nil
		case r == '\\':
			if !escaped {
				b.WriteString(l.src[start:l.off])
				escaped = true
			}
			escPos := l.col
			l.skip(1)
			n, nw := l.peekRune()
			if n != '"' && n != '\\' {
				if nw == 0 {
					return token{}, errorf(pos, "unterminated string")
				}
				esc := fmt.Sprintf(`"\%c"`, n)
				if !unicode.IsPrint(n) {
					esc = fmt.Sprintf(`"\" followed by %q`, n)
				}
				return token{}, errorf(escPos, `invalid escape %s in string (only \" and \\ are allowed)`, esc)
			}
			l.skip(nw)
			b.WriteRune(n)
		default:
			l.skip(w)
			if escaped {
				b.WriteRune(r)
			}
		}
	}
}

func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}
	return unicode.IsSpace(r)
}

// isWordRune reports whether r may appear in a bare word.
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			strings.ContainsRune("./:-_*", r)
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// isFieldRune reports whether r may appear in a field name: a bare word
// rune other than ':' and '*'.
func isFieldRune(r rune) bool {
	return r != ':' && r != '*' && isWordRune(r)
}

// validFieldName reports whether name is a well-formed field name.
func validFieldName(name string) bool {
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if !unicode.IsLetter(first) || !(unicode.IsLetter(last) || unicode.IsDigit(last)) {
		return false
	}
	for _, r := range name {
		if !isFieldRune(r) {
			return false
		}
	}
	return true
}

var keywords = []string{"and", "or", "not", "in", "contains", "matches", "exists"}

// keyword returns the lower-case keyword t spells, or "".
func keyword(t token) string {
	if t.kind != tokWord {
		return ""
	}
	for _, k := range keywords {
		if asciiEqualFold(t.text, k) {
			return k
		}
	}
	return ""
}

// asciiEqualFold is strings.EqualFold restricted to ASCII, so that
// look-alikes such as "exiſts" (long s) are not keywords.
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// describe names a token for an error message.
func describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of filter"
	case tokString:
		return "string " + quoteShort(t.text)
	}
	return quoteShort(t.text)
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := 0
	for i := 0; i < max; i++ {
		_, w := utf8.DecodeRuneInString(s[cut:])
		cut += w
	}
	return fmt.Sprintf("%q...", s[:cut])
}
