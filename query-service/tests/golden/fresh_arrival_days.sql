SELECT DISTINCT toString(event_date) AS day FROM arrivals WHERE app_id = ? AND ((kafka_topic = ? AND kafka_partition = ? AND kafka_offset > ?) OR (kafka_topic = ? AND kafka_partition = ?) OR (kafka_topic, kafka_partition) NOT IN ((?, ?), (?, ?)))
-- binds: ["app-1","events",0,41,"events",1,"events",0,"events",1]
