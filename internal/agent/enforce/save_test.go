package enforce

import "strings"

// ours extracts Palisade's lines from a normalized filter save: its chain
// declarations, its chains' rules and the jumps to them. It also reports
// which base chains have a jump and whether one carries the new-table mark.
func ours(save string) (lines []string, jumps map[string]bool, newTable bool, jumpLines []string) {
	jumps = map[string]bool{}
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, ":PALISADE-IN ") || strings.HasPrefix(l, ":PALISADE-OUT ") || strings.HasPrefix(l, ":PALISADE-FWD "):
			lines = append(lines, l)
		case strings.HasPrefix(l, "-A PALISADE-IN ") || strings.HasPrefix(l, "-A PALISADE-OUT ") || strings.HasPrefix(l, "-A PALISADE-FWD "):
			lines = append(lines, l)
		case strings.HasPrefix(l, "-A "):
			for c, base := range baseChain {
				if strings.HasPrefix(l, "-A "+base+" ") && strings.HasSuffix(l, " -j "+c) {
					lines = append(lines, l)
					jumpLines = append(jumpLines, l)
					jumps[c] = true
					if strings.Contains(l, `"`+jumpCommentNewTable+`"`) {
						newTable = true
					}
				}
			}
		}
	}
	return lines, jumps, newTable, jumpLines
}

// emptyFilter reports a filter table with only its base chains, accepting,
// and no rule.
func emptyFilter(save string) bool {
	for _, l := range strings.Split(save, "\n") {
		switch {
		case l == "", l == "*filter", l == "COMMIT":
		case l == ":INPUT ACCEPT [0:0]", l == ":FORWARD ACCEPT [0:0]", l == ":OUTPUT ACCEPT [0:0]":
		default:
			return false
		}
	}
	return true
}
