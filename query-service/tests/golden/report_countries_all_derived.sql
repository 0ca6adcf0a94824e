SELECT d0, toFloat64(sum(m0)) AS m0, toFloat64(uniqExactMerge(s)) AS m1 FROM (SELECT country AS d0, page_views AS m0, visitors AS s FROM report_pages_hourly FINAL WHERE app_id = ? AND hour >= toDateTime(?) AND hour < toDateTime(?) AND page_views > 0) GROUP BY d0 ORDER BY m0 DESC, d0 LIMIT 6
-- binds: ["app-1",1699999200,1700604000]
