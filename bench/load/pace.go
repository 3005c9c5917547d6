package load

import "sort"

func sortSchedule(s []schedEntry) {
	sort.SliceStable(s, func(i, j int) bool { return s[i].at < s[j].at })
}
