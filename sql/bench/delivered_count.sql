SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'
