package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// pod is the record most tests evaluate against.
var pod = MapRecord{
	"namespace":                       Scalar("sock-shop"),
	"name":                            Scalar("carts-7d4f9"),
	"ip":                              SetOf("10.244.1.5", "fd00:10:244::5"),
	"cidrs":                           SetOf("10.244.1.0/24"),
	"mapped":                          Scalar("::ffff:10.1.2.3"),
	"label.app":                       Scalar("carts"),
	"label.app.kubernetes.io/name":    Scalar("carts"),
	"annotation.prometheus.io/scrape": Scalar("true"),
	"vuln.max_cvss":                   Scalar("9.8"),
	"vuln.cve":                        SetOf("CVE-2023-45288", "CVE-2024-24790"),
	"ports":                           SetOf("80", "8080"),
	"dst.port":                        Scalar("80"),
	"image":                           Scalar("nginx:1.25"),
	"text":                            Scalar(`say "hi" \o/`),
	"empty":                           {},
	"noports":                         SetOf(),
}

// mustParse parses src against AnySchema and fails the test on error.
func mustParse(t testing.TB, src string) *Filter {
	t.Helper()
	f, err := Parse(src, AnySchema{})
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return f
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		// empty filter
		{"", true},
		{" \t\n ", true},

		// = and ==
		{`namespace = "sock-shop"`, true},
		{`namespace = sock-shop`, true},
		{`namespace == "sock-shop"`, true},
		{`namespace = "sock"`, false},
		{`ip = 10.244.1.5`, true}, // any element of a set
		{`ip = 10.0.0.1`, false},
		{`label.tier = web`, false}, // missing
		{`empty = ""`, true},        // scalar without Strs is ""
		{`noports = ""`, false},     // empty set has no element
		{`text = "say \"hi\" \\o/"`, true},
		{`image = nginx:1.25`, true},
		{`annotation.prometheus.io/scrape = "true"`, true},
		{`label.app.kubernetes.io/name = carts`, true},

		// !=
		{`namespace != other`, true},
		{`namespace != sock-shop`, false},
		{`ip != 10.244.1.5`, false}, // an element equals
		{`ip != 1.2.3.4`, true},
		{`label.tier != web`, true}, // missing
		{`noports != 80`, true},

		// numbers with = and !=
		{`dst.port = 80`, true},
		{`dst.port = 80.0`, true},
		{`dst.port = "80.0"`, false}, // quoted: string comparison
		{`dst.port = "80"`, true},
		{`vuln.max_cvss = 9.80`, true},
		{`ports = 8080`, true},
		{`namespace = 80`, false},
		{`dst.port != 80.0`, false},
		{`ports != 443`, true},

		// in (list)
		{`label.app in (carts, orders)`, true},
		{`label.app in ("orders")`, false},
		{`label.app not in (orders)`, true},
		{`label.app not in (orders, carts)`, false},
		{`vuln.cve in ("CVE-2024-24790")`, true},
		{`vuln.cve not in ("CVE-2024-24790")`, false},
		{`label.tier in (web)`, false},    // missing
		{`label.tier not in (web)`, true}, // missing
		{`dst.port in (443, 80.0)`, true},
		{`ip in (192.168.0.0/16, fd00:10:244::/48)`, true},
		{`ip in (192.168.0.0/16)`, false},
		{`ip in ("10.244.0.0/16")`, false}, // quoted: string equality
		{`namespace in (10.0.0.0/8, sock-shop)`, true},
		{`label.app in (a, b, c, d, e, f, g, h, carts)`, true}, // map path
		{`label.app in (a, b, c, d, e, f, g, h, i)`, false},
		{`ports in (a, b, c, d, e, f, g, h, 8080.0)`, true},
		{`ip in (a, b, c, d, e, f, g, h, 10.0.0.0/8)`, true},

		// in CIDR
		{`ip in 10.244.0.0/16`, true},
		{`ip in 10.245.0.0/16`, false},
		{`ip in fd00:10:244::/64`, true},
		{`ip in "10.244.0.0/16"`, true},
		{`ip in 10.244.1.99/16`, true}, // host bits are ignored
		{`ip not in 10.244.0.0/16`, false},
		{`ip not in 192.168.0.0/16`, true},
		{`cidrs in 10.244.0.0/16`, true}, // subnet
		{`cidrs in 10.244.1.0/25`, false},
		{`mapped in 10.0.0.0/8`, true},
		{`name in 10.0.0.0/8`, false},
		{`label.ip in 10.0.0.0/8`, false},    // missing
		{`label.ip not in 10.0.0.0/8`, true}, // missing

		// contains
		{`name contains carts`, true},
		{`name contains "7d4"`, true},
		{`name contains xyz`, false},
		{`vuln.cve contains "CVE-2023-45288"`, true},
		{`vuln.cve contains "2023"`, false}, // sets: exact membership
		{`label.tier contains x`, false},    // missing
		{`name not contains xyz`, true},
		{`label.tier not contains x`, true}, // missing

		// matches
		{`name matches "^carts-"`, true},
		{`name matches 7d`, true}, // unanchored
		{`name matches "^7d"`, false},
		{`vuln.cve matches "^CVE-2024-"`, true},
		{`label.tier matches ""`, false}, // missing
		{`name not matches "^orders"`, true},
		{`image matches "nginx:1\\.2"`, true},

		// exists
		{`label.app exists`, true},
		{`label.tier exists`, false},
		{`not label.tier exists`, true},
		{`label.tier not exists`, true},
		{`label.app not exists`, false},
		{`empty exists`, true},
		{`noports exists`, true},

		// < <= > >=
		{`vuln.max_cvss >= 9`, true},
		{`vuln.max_cvss > 9.8`, false},
		{`vuln.max_cvss <= 9.8`, true},
		{`vuln.max_cvss < 10`, true},
		{`vuln.max_cvss >= "9"`, true},
		{`vuln.max_cvss > -1e3`, true},
		{`ports > 1000`, true}, // any element
		{`ports < 10`, false},
		{`name > 1`, false},         // not a number
		{`vuln.high > 0`, false},    // missing
		{`not vuln.high > 0`, true}, // missing

		// boolean structure
		{`namespace = sock-shop and label.app = carts`, true},
		{`namespace = sock-shop and label.app = orders`, false},
		{`namespace = other or label.app = carts`, true},
		{`namespace = other or label.app = orders`, false},
		{`not namespace = other`, true},
		{`(namespace = other or label.app = carts) and not label.tier exists`, true},
	} {
		if got := mustParse(t, tc.src).Match(pod); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	// a and b are true, c is false.
	r := MapRecord{"a": Scalar("1"), "b": Scalar("1"), "c": Scalar("0")}
	for _, tc := range []struct {
		src       string
		want      bool
		canonical string // String(), when it differs from src
	}{
		// or binds looser than and: a or (b and c)
		{"a = 1 or b = 1 and c = 1", true, ""},
		{"c = 1 and b = 1 or a = 1", true, ""},
		{"(a = 1 or b = 1) and c = 1", false, ""},
		// not binds tighter than and: (not c) and (not a)
		{"not c = 1 and not a = 1", false, ""},
		{"not a = 1 and b = 1", false, ""},
		{"not (a = 1 and c = 1)", true, ""},
		{"not not a = 1", true, ""},
		{"c = 1 and (a = 1 or b = 1) or a = 1", true, ""},
		// redundant parentheses disappear
		{"((a = 1))", true, "a = 1"},
		{"a = 1 or (b = 1 and c = 1)", true, "a = 1 or b = 1 and c = 1"},
		{"a = 1 and (b = 1 and c = 1)", false, "a = 1 and b = 1 and c = 1"},
		{"(a = 1 or c = 1) or (c = 1)", true, "a = 1 or c = 1 or c = 1"},
	} {
		if tc.canonical == "" {
			tc.canonical = tc.src
		}
		if got := checkString(t, tc.src, tc.canonical).Match(r); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.src, got, tc.want)
		}
	}
}

// checkString parses src and checks that its String() is canonical and
// re-parses to the same String().
func checkString(t *testing.T, src, canonical string) *Filter {
	t.Helper()
	f := mustParse(t, src)
	s := f.String()
	if s != canonical {
		t.Errorf("%s: String() = %q, want %q", src, s, canonical)
	}
	if again := mustParse(t, s).String(); again != s {
		t.Errorf("%s: String() %q re-parses to %q", src, s, again)
	}
	return f
}

func TestKeywordsCaseInsensitive(t *testing.T) {
	for _, tc := range []struct{ src, canonical string }{
		{`namespace = sock-shop AND label.app IN (carts) And NOT label.tier EXISTS`,
			`namespace = "sock-shop" and label.app in ("carts") and not label.tier exists`},
		{`label.app Not In (x) oR name CONTAINS carts`, `label.app not in ("x") or name contains "carts"`},
		{`name MATCHES "^c" and ip In 10.0.0.0/8`, `name matches "^c" and ip in 10.0.0.0/8`},
		{`label.tier NOT EXISTS`, `label.tier not exists`},
	} {
		if !checkString(t, tc.src, tc.canonical).Match(pod) {
			t.Errorf("%s: does not match", tc.src)
		}
	}
	// Only ASCII case folding: "ſ" (long s) does not make a keyword.
	if _, err := Parse("a exiſts", AnySchema{}); err == nil {
		t.Error(`"a exiſts" parsed`)
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct{ src, canonical string }{
		{"", ""},
		{`namespace == sock-shop AND label.app IN (carts,"orders")`,
			`namespace = "sock-shop" and label.app in ("carts", "orders")`},
		{`a != b`, `a != "b"`},
		{`x = "a\"b\\c"`, `x = "a\"b\\c"`},
		{"x = \"line\nbreak\"", "x = \"line\nbreak\""},
		{`x = ""`, `x = ""`},
		{`x = "in"`, `x = "in"`},
		{`x = -12`, `x = -12`},
		{`x = 1e5`, `x = 1e5`},
		{`x = "1e5"`, `x = "1e5"`},
		{`x = 1.2.3`, `x = "1.2.3"`},
		{`x = web-*`, `x = "web-*"`},
		{`ip in 10.244.0.0/16`, `ip in 10.244.0.0/16`},
		{`ip NOT IN "fd00::/8"`, `ip not in fd00::/8`},
		{`dst.port in (80, "443", 10.0.0.0/8, a/b)`, `dst.port in (80, "443", 10.0.0.0/8, "a/b")`},
		{`vuln.max_cvss >= "9.0"`, `vuln.max_cvss >= 9.0`},
		{`name not matches "^a"`, `name not matches "^a"`},
		{`name not contains x`, `name not contains "x"`},
		{`label.app in (a, b, c, d, e, f, g, h, i, 1)`, `label.app in ("a", "b", "c", "d", "e", "f", "g", "h", "i", 1)`},
		{"not (a exists or b exists) and c exists", "not (a exists or b exists) and c exists"},
		{"café = thé", `café = "thé"`},
	} {
		checkString(t, tc.src, tc.canonical)
	}
}

func TestParseErrors(t *testing.T) {
	schema := StaticSchema{
		Fields:   []string{"namespace", "name", "addr", "a", "b", "ip", "é", "ü"},
		Prefixes: []string{"label."},
	}
	for _, tc := range []struct {
		src  string
		pos  int
		frag string
	}{
		{`lable.app = x`, 1, `unknown field "lable.app"`},
		{`namespace = sock-shop and lable.app = x`, 27, `unknown field "lable.app"`},
		{`label. = x`, 1, `invalid field name "label."`},
		{`label = x`, 1, `unknown field "label"`},
		{`namespace = `, 13, `expected value after "=", found end of filter`},
		{`namespace == and a = 1`, 14, `expected value after "==", found "and"`},
		{`name matches "a("`, 14, `invalid regular expression "a(": missing closing )`},
		{`addr in abc`, 9, `"abc" is not a CIDR`},
		{`(a = 1 or b = 2`, 1, `unclosed "("`},
		{`a = 1 and (b = 2 and (a = 1)`, 11, `unclosed "("`},
		{`a in (x, y`, 6, `unclosed "("`},
		{`a = 1)`, 6, `unexpected ")"`},
		{`a = "abc`, 5, `unterminated string`},
		{`a = "abc\`, 5, `unterminated string`},
		{`a = "a\nb"`, 7, `invalid escape "\n"`},
		{`a ~ b`, 3, `unexpected character '~'`},
		{`a ! b`, 3, `unexpected "!"`},
		{`a b`, 3, `expected an operator after "a", found "b"`},
		{`a = 1 b = 2`, 7, `expected "and", "or" or end of filter, found "b"`},
		{`(a = 1 b = 2)`, 8, `expected "and", "or" or ")", found "b"`},
		{`a > abc`, 5, `"abc" is not a number`},
		{`a > "+1"`, 5, `"+1" is not a number`},
		{`a not = 1`, 7, `expected "in", "contains", "matches" or "exists" after "not", found "="`},
		{`and = 1`, 1, `expected a field name, found "and"`},
		{`a:b = 1`, 1, `invalid field name "a:b"`},
		{`9a = 1`, 1, `invalid field name "9a"`},
		{`"a" = 1`, 1, `expected a field name, found string "a"`},
		{`a in ()`, 7, `expected value after "(", found ")"`},
		{`a in (x,)`, 9, `expected value after ",", found ")"`},
		{`a in (x y)`, 9, `expected "," or ")" in list, found "y"`},
		{`ip in (10.0.0.0/33)`, 8, `"10.0.0.0/33" is not a valid CIDR`},
		{`a = 1 and`, 10, `expected a field name, found end of filter`},
		{`not`, 4, `expected a field name, found end of filter`},
		{`()`, 2, `expected a field name, found ")"`},
		{`é = 1 and ü ~`, 13, `unexpected character '~'`}, // columns count runes
		{"a = \xff", 5, `invalid UTF-8`},
		{`a contains`, 11, `expected value after "contains"`},
	} {
		_, err := Parse(tc.src, schema)
		var perr *Error
		if !errors.As(err, &perr) {
			t.Errorf("%s: got error %v, want *Error", tc.src, err)
			continue
		}
		if perr.Pos != tc.pos || !strings.Contains(perr.Msg, tc.frag) {
			t.Errorf("%s: got %q, want column %d containing %q", tc.src, err, tc.pos, tc.frag)
		}
		if want := fmt.Sprintf("column %d: %s", perr.Pos, perr.Msg); err.Error() != want {
			t.Errorf("%s: Error() = %q, want %q", tc.src, err.Error(), want)
		}
	}
}

func TestLimits(t *testing.T) {
	nested := func(n int) string {
		return strings.Repeat("(", n) + "a = 1" + strings.Repeat(")", n)
	}
	mustParse(t, nested(MaxDepth))
	mustParse(t, strings.Repeat("not ", MaxDepth)+"a exists")
	for _, tc := range []struct {
		src  string
		pos  int
		frag string
	}{
		{nested(MaxDepth + 1), MaxDepth + 1, "nested too deeply"},
		{strings.Repeat("not ", MaxDepth+1) + "a exists", 4*MaxDepth + 1, "nested too deeply"},
		{nested(10000), MaxDepth + 1, "nested too deeply"},
		{strings.Repeat("a = 1 or ", MaxLength/9+1) + "a = 1", MaxLength + 1, "limit is 65536"},
	} {
		_, err := Parse(tc.src, nil)
		var perr *Error
		if !errors.As(err, &perr) || perr.Pos != tc.pos || !strings.Contains(perr.Msg, tc.frag) {
			t.Errorf("%.20s...: got %v, want column %d containing %q", tc.src, err, tc.pos, tc.frag)
		}
	}

	// A long flat chain at the term limit parses and evaluates.
	src := strings.Repeat("b = 1 and ", MaxTerms-1) + "a = 1"
	f := mustParse(t, src)
	if f.Match(MapRecord{"a": Scalar("1"), "b": Scalar("1")}) != true {
		t.Error("long chain does not match")
	}
	if got := f.Fields(); len(got) != 2 {
		t.Errorf("long chain Fields() = %v", got)
	}
}

// TestCostLimits: filters whose evaluation would cost too much are refused
// at parse time with the column at fault: too many conditions, a huge
// in-list, a long or exploding regular expression.
func TestCostLimits(t *testing.T) {
	ips := make([]string, 5000)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	for _, tc := range []struct {
		name, src string
		pos       int
		frag      string
	}{
		{"conditions", strings.Repeat("b = 1 and ", MaxTerms) + "a = 1", 10*MaxTerms + 1, "more than 1000 conditions"},
		{"60 KB ip list", "ip in (" + strings.Join(ips, ", ") + ")", 0, "more than 1000 conditions"},
		{"long regexp", "a matches \"" + strings.Repeat("x", MaxRegexp+1) + "\"", 11, "limit is 1024"},
		{"exploding regexp", `a matches "(abcdefghij|klmnopqrst|uvwxyzabcd){1000}"`, 11, "too complex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.src, nil)
			var perr *Error
			if !errors.As(err, &perr) || (tc.pos != 0 && perr.Pos != tc.pos) || !strings.Contains(perr.Msg, tc.frag) {
				t.Fatalf("got %.200v, want column %d containing %q", err, tc.pos, tc.frag)
			}
		})
	}
	if _, err := Parse(`a matches "^(front|back)-end-[0-9a-f]{8,10}$"`, nil); err != nil {
		t.Fatalf("an ordinary regexp: %v", err)
	}
}

func TestFields(t *testing.T) {
	f := mustParse(t, `b = 1 and (a exists or b != 2) and label.x in (1) and not a matches x`)
	if got, want := fmt.Sprint(f.Fields()), "[b a label.x]"; got != want {
		t.Errorf("Fields() = %s, want %s", got, want)
	}
	f.Fields()[0] = "changed"
	if f.Fields()[0] != "b" {
		t.Error("Fields() exposes the filter's slice")
	}
	if got := mustParse(t, "  ").Fields(); len(got) != 0 {
		t.Errorf("empty filter Fields() = %v", got)
	}
}

func TestNilAndEmptyFilter(t *testing.T) {
	var f *Filter
	if !f.Match(pod) || f.String() != "" || f.Fields() != nil {
		t.Error("nil *Filter is not the empty filter")
	}
	if !mustParse(t, "").Match(MapRecord{}) {
		t.Error("empty filter does not match an empty record")
	}
}

func TestStaticSchema(t *testing.T) {
	s := StaticSchema{Fields: []string{"namespace", "dst.port"}, Prefixes: []string{"label.", "src.label."}}
	for name, want := range map[string]bool{
		"namespace":                    true,
		"dst.port":                     true,
		"names":                        false,
		"label.app":                    true,
		"label.app.kubernetes.io/name": true,
		"label.":                       false,
		"label":                        false,
		"src.label.app":                true,
		"dst.label.app":                false,
		"label.a:b":                    false,
	} {
		if got := s.ValidField(name); got != want {
			t.Errorf("ValidField(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	f := mustParse(t, `namespace = "sock-shop" and label.app in ("carts","orders") and not annotation.skip exists`+
		` and ip in 10.244.0.0/16 and name matches "^carts" and vuln.max_cvss >= 9 and dst.port = 80`)
	if !f.Match(pod) {
		t.Fatal("does not match")
	}
	if n := testing.AllocsPerRun(100, func() { f.Match(pod) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

// fuzzSeeds are inputs of every shape the parser knows, good and bad.
var fuzzSeeds = []string{
	"",
	`namespace = "sock-shop" and label.app in ("carts", "orders") and not annotation.skip exists`,
	`ip in 10.244.0.0/16 and not label.tier exists`,
	`vuln.max_cvss >= 9 or vuln.cve contains "CVE-2023-45288"`,
	`a = 1 or (b = 2 and c != x) or not (d matches "^x$" and e not contains "q")`,
	`ip not in (fd00::/8, 10.0.0.0/8, x, 80) AND dst.port == 80.0`,
	`x = "a\"b\\c" and y <= -1e3 and z > .5`,
	`label.app.kubernetes.io/name NOT EXISTS`,
	`(((a = 1)))`,
	`a in (a, b, c, d, e, f, g, h, i)`,
	`name matches "a("`,
	`a = "unterminated`,
	`a = 1)`,
	"a = \xff",
	`é = 1 and ü ~`,
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		f1, err := Parse(src, AnySchema{})
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse(%q): error %v is not *Error", src, err)
			}
			if perr.Pos < 1 || perr.Pos > utf8.RuneCountInString(src)+1 {
				t.Fatalf("Parse(%q): %v: position out of range", src, err)
			}
			return
		}
		s := f1.String()
		f2, err := Parse(s, AnySchema{})
		if err != nil {
			if len(s) > MaxLength { // canonical quoting can grow a huge input
				return
			}
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", src, s, err)
		}
		if s2 := f2.String(); s2 != s {
			t.Fatalf("Parse(%q).String() = %q re-parses to %q", src, s, s2)
		}
		if f1.Match(pod) != f2.Match(pod) {
			t.Fatalf("%q and its String() %q disagree on a record", src, s)
		}
		if a, b := fmt.Sprint(f1.Fields()), fmt.Sprint(f2.Fields()); a != b {
			t.Fatalf("%q has fields %s, its String() %q has %s", src, a, s, b)
		}
	})
}

// BenchmarkMatch50k evaluates filters over 50,000 workloads; ns/op is for
// all of them.
func BenchmarkMatch50k(b *testing.B) {
	namespaces := []string{"sock-shop", "kube-system", "default", "monitoring", "payments"}
	apps := []string{"carts", "orders", "payment", "user", "front-end", "catalogue", "shipping"}
	records := make([]Record, 50000)
	for i := range records {
		r := MapRecord{
			"namespace":                       Scalar(namespaces[i%len(namespaces)]),
			"name":                            Scalar(fmt.Sprintf("%s-%d", apps[i%len(apps)], i)),
			"kind":                            Scalar("pod"),
			"node":                            Scalar(fmt.Sprintf("node-%d", i%20)),
			"ip":                              SetOf(fmt.Sprintf("10.244.%d.%d", i/250%256, i%250)),
			"label.app":                       Scalar(apps[i%len(apps)]),
			"label.pod-template-hash":         Scalar("7d4f9c"),
			"annotation.prometheus.io/scrape": Scalar("true"),
			"vuln.max_cvss":                   Scalar(fmt.Sprintf("%d.%d", i%10, i%7)),
		}
		if i%3 == 0 {
			r["annotation.skip"] = Scalar("yes")
		}
		records[i] = r
	}
	for _, bc := range []struct {
		name  string
		match func(Record) bool
	}{
		{"typical", mustParse(b, `namespace = "sock-shop" and label.app in ("carts","orders") and not annotation.skip exists`).Match},
		{"cidr-regexp-number", mustParse(b, `ip in 10.244.0.0/20 and name matches "^(carts|orders)-" or vuln.max_cvss >= 9`).Match},
		// The first condition of "typical" written by hand: the least any
		// filter must do. With MapRecords, the map lookup and the load of
		// Strs dominate, not the filter's own work.
		{"hand-written-first-condition", func(r Record) bool {
			v, _ := r.Field("namespace")
			return v.Str == "sock-shop" || len(v.Strs) > 0 && v.Strs[0] == "sock-shop"
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = 0
				for _, r := range records {
					if bc.match(r) {
						n++
					}
				}
			}
			if n == 0 {
				b.Fatal("nothing matched")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(records)), "ns/record")
		})
	}
}
