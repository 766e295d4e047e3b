"""A labelled bilingual retrieval set for tests/test_retrieval_quality.py (written for this project).

Passages come in topical clusters (cooking, travel, health, devices, ...) so
that every query has near-miss distractors. Each query names the one passage
that answers it; some queries cross languages.
"""

PASSAGES = {
    # --- cooking (en)
    "cook-rice": "To cook jasmine rice, rinse it twice, use one and a quarter cups of water per cup of rice, and simmer covered for fifteen minutes.",
    "cook-pasta": "Pasta water should be as salty as the sea; add the pasta only once the water is at a rolling boil and stir in the first minute.",
    "cook-bread": "Sourdough bread needs a long cold proof in the fridge overnight so the crust blisters and the crumb turns open and glossy.",
    "cook-steak": "Let a steak rest for five minutes after searing so the juices settle back into the meat instead of running onto the board.",
    "cook-eggs": "For soft boiled eggs with a runny yolk, lower them into boiling water for six and a half minutes, then cool them in ice water.",
    "cook-knife": "A chef's knife stays sharp longer if you hone it on a steel before each use and never put it in the dishwasher.",
    # --- travel (en)
    "travel-passport": "Many countries require that your passport stays valid for at least six months after the date you plan to leave.",
    "travel-jetlag": "To beat jet lag after flying east, get bright morning light at your destination and avoid long naps on the first day.",
    "travel-luggage": "Carry-on bags on most European budget airlines are limited to ten kilograms and must fit under the seat in front.",
    "travel-train": "The night train from Vienna to Venice leaves at nine in the evening and arrives shortly after breakfast.",
    "travel-insurance": "Travel insurance usually does not cover injuries from extreme sports such as skydiving unless you buy an extra option.",
    "travel-visa": "Citizens of the Schengen area can stay in Japan for up to ninety days as tourists without applying for a visa.",
    # --- health (en)
    "health-sleep": "Adults need seven to nine hours of sleep; keeping the bedroom cool and dark helps you fall asleep faster.",
    "health-water": "A simple rule for hydration is to drink enough that your urine stays pale yellow through the day.",
    "health-walk": "Walking briskly for thirty minutes a day lowers blood pressure and improves mood within a few weeks.",
    "health-sugar": "Too much added sugar raises the risk of tooth decay; the guideline is under twenty-five grams a day for adults.",
    "health-posture": "When working at a desk, keep the top of the screen at eye level and stand up to stretch every half hour.",
    "health-sunscreen": "Apply sunscreen fifteen minutes before going outside and reapply every two hours, or after swimming.",
    # --- devices (en)
    "dev-reset": "To factory reset the router, hold the pinhole button on the back for ten seconds until the lights blink orange.",
    "dev-battery": "Lithium batteries last longest when kept between twenty and eighty percent charge rather than full all the time.",
    "dev-wifi": "If the wifi keeps dropping, move the router away from the microwave oven and switch to the five gigahertz band.",
    "dev-backup": "Follow the three-two-one backup rule: three copies of your data, on two kinds of media, one of them off site.",
    "dev-password": "A long passphrase of four random words is easier to remember and harder to crack than a short complex password.",
    "dev-printer": "When the printer shows a paper jam, open the rear door and pull the sheet out slowly in the direction of the paper path.",
    "dev-headphones": "Noise-cancelling headphones use microphones to record outside sound and play an inverted wave to cancel it.",
    # --- nature (en)
    "nat-bees": "Honey bees communicate the direction of flowers to the hive with a waggle dance whose angle points toward the sun.",
    "nat-octopus": "An octopus has three hearts and blue blood, and most of its neurons sit in its eight arms rather than its brain.",
    "nat-bamboo": "Some species of bamboo grow almost a metre in a single day, making them the fastest growing plants on earth.",
    "nat-whale": "Blue whales are the largest animals ever known; their heart alone weighs about as much as a small car.",
    "nat-volcano": "A volcano is called dormant when it has not erupted for a long time but is still expected to erupt again.",
    "nat-aurora": "The northern lights appear when charged particles from the sun hit oxygen and nitrogen high in the atmosphere.",
    "nat-tides": "Ocean tides are caused mainly by the pull of the moon, with two high tides roughly every twenty-five hours.",
    # --- money and work (en)
    "money-budget": "The fifty-thirty-twenty budget puts half of your income to needs, thirty percent to wants and twenty to savings.",
    "money-interest": "Compound interest means you earn interest on the interest too, so savings grow faster the earlier you start.",
    "money-tax": "Freelancers should set aside about a quarter of every payment for income tax, which is due at the end of the year.",
    "work-meeting": "Meetings run better with a written agenda sent the day before and a fixed end time everyone respects.",
    "work-email": "Put the request in the first line of an email; people decide in seconds whether to read the rest.",
    "work-interview": "In a job interview, answer behaviour questions with a situation, the task, the action you took and the result.",
    # --- history and science (en)
    "hist-printing": "Gutenberg's printing press, around 1440, used movable metal type and made books far cheaper to produce.",
    "hist-pyramids": "The Great Pyramid of Giza was the tallest building in the world for nearly four thousand years.",
    "hist-moon": "Apollo 11 landed on the moon in July 1969, and Neil Armstrong was the first person to walk on its surface.",
    "sci-light": "Light from the sun takes about eight minutes and twenty seconds to reach the earth.",
    "sci-dna": "DNA is a double helix of two strands held together by pairs of bases: adenine with thymine, guanine with cytosine.",
    "sci-boiling": "Water boils at a lower temperature on a high mountain because the air pressure there is lower.",
    "sci-rainbow": "A rainbow forms when sunlight is refracted, reflected and dispersed inside raindrops, splitting into colours.",
    # --- sports and music (en)
    "sport-marathon": "A marathon is 42.195 kilometres long, a distance fixed at the 1908 London Olympics.",
    "sport-chess": "In chess, castling moves the king two squares toward a rook and jumps the rook to the other side of the king.",
    "sport-swim": "Freestyle swimmers breathe every third stroke so they alternate sides and keep their stroke balanced.",
    "music-piano": "A standard piano has eighty-eight keys: fifty-two white keys and thirty-six black keys.",
    "music-guitar": "Standard guitar tuning from the lowest string is E, A, D, G, B and E.",
    "music-tempo": "Tempo is measured in beats per minute; a slow ballad sits near sixty while dance music runs around one hundred and twenty.",
    # --- product manual (en)
    "man-warranty": "The coffee machine comes with a two year warranty that does not cover damage from limescale.",
    "man-descale": "Descale the coffee machine every three months with citric acid, running two full tanks of clean water afterwards.",
    "man-grind": "For espresso, set the grinder to a fine setting; coarse grounds make the shot run too fast and taste sour.",
    "man-milk": "Clean the milk frother nozzle right after each use, because dried milk blocks the steam holes.",
    # --- 烹饪 (zh)
    "zh-cook-dumpling": "包饺子时，饺子皮的边缘要捏紧，煮的时候水开后加三次凉水，饺子浮起来就熟了。",
    "zh-cook-tea": "泡绿茶的水温最好在八十度左右，水太烫会把茶叶烫熟，茶汤变得苦涩。",
    "zh-cook-hotpot": "吃火锅时，先涮肉类再涮蔬菜，豆腐和土豆要煮得久一点才入味。",
    "zh-cook-noodle": "手工拉面的面团要加少许盐和碱，揉好后醒半个小时，面条才会筋道有弹性。",
    "zh-cook-rice-cooker": "电饭锅煮粥时，米和水的比例大约是一比十，选择煮粥模式需要一个半小时。",
    # --- 出行 (zh)
    "zh-travel-highspeed": "北京到上海的高铁最快只需要四个半小时，二等座的票价大约五百五十元。",
    "zh-travel-metro": "在深圳坐地铁可以直接用手机扫码进站，不需要提前购买单程票。",
    "zh-travel-hotel": "预订酒店时最好选择可以免费取消的房型，行程有变时就不会损失房费。",
    "zh-travel-luggage-cn": "国内航班经济舱通常可以免费托运二十公斤行李，充电宝必须随身携带，不能托运。",
    "zh-travel-tibet": "去西藏旅行要注意预防高原反应，刚到拉萨的头两天不要洗澡，也不要剧烈运动。",
    # --- 健康 (zh)
    "zh-health-cold": "感冒的时候要多喝温水、多休息，大多数普通感冒一周左右会自己好转，不需要吃抗生素。",
    "zh-health-eyes": "长时间看屏幕时，每二十分钟看一看二十英尺外的地方二十秒，可以缓解眼睛疲劳。",
    "zh-health-back": "久坐办公的人容易腰疼，每天做十分钟的拉伸和核心训练可以明显减轻症状。",
    "zh-health-diet": "中国居民膳食指南建议每天吃十二种以上的食物，每周吃二十五种以上。",
    "zh-health-teeth": "刷牙应该每次至少两分钟，牙刷每三个月换一次，睡前刷牙最重要。",
    # --- 设备 (zh)
    "zh-dev-phone-storage": "手机存储空间不足时，可以先清理聊天软件的缓存和已经看过的视频文件。",
    "zh-dev-ac": "空调夏天设置在二十六度最省电，每两周清洗一次过滤网可以保持制冷效果。",
    "zh-dev-washer": "洗衣机用久了会有异味，每个月用滚筒清洁程序加一包清洁剂空转一次。",
    "zh-dev-fridge": "冰箱冷藏室的温度保持在四度左右最合适，热的剩菜要放凉以后再放进去。",
    "zh-dev-smart-speaker": "智能音箱连不上网络时，长按静音键五秒恢复出厂设置，然后在手机应用里重新配网。",
    # --- 自然 (zh)
    "zh-nat-panda": "大熊猫每天要花十几个小时吃竹子，一只成年大熊猫一天能吃掉十几公斤竹子。",
    "zh-nat-yangtze": "长江全长约六千三百公里，是中国第一长河，也是世界第三长河。",
    "zh-nat-typhoon": "台风来临前要收好阳台上的花盆和杂物，关紧门窗，尽量待在室内。",
    "zh-nat-solar-terms": "二十四节气是古人根据太阳的位置划分的，立春是第一个节气，通常在二月四日前后。",
    "zh-nat-lotus": "荷花一般在六月到八月开放，杭州西湖的曲院风荷是赏荷的好地方。",
    # --- 工作与学习 (zh)
    "zh-work-resume": "写简历时要突出做过的项目和具体成果，最好用数字说明，比如把成本降低了百分之二十。",
    "zh-work-overtime": "根据劳动法，工作日加班的工资不低于平时工资的一点五倍，休息日加班不低于两倍。",
    "zh-work-meeting-cn": "开会前把议程发给所有人，会后整理会议纪要并写明每件事的负责人和截止日期。",
    "zh-study-english": "学英语最好的方法是每天坚持听和说，哪怕只有十五分钟，也比周末突击三个小时有效。",
    "zh-study-memory": "艾宾浩斯遗忘曲线说明，学过的内容在二十分钟后就会忘掉一半，所以要及时复习。",
    # --- 历史与文化 (zh)
    "zh-hist-greatwall": "长城始建于春秋战国时期，现在看到的大部分城墙是明朝修建的。",
    "zh-hist-paper": "东汉的蔡伦改进了造纸术，用树皮、麻头和破布造出了又轻又便宜的纸。",
    "zh-hist-silkroad": "丝绸之路从长安出发，经过河西走廊和西域，一直通到地中海沿岸。",
    "zh-culture-springfestival": "春节是中国最重要的传统节日，除夕晚上全家人一起吃年夜饭、守岁。",
    "zh-culture-midautumn": "中秋节在农历八月十五，人们赏月、吃月饼，象征家人团圆。",
    "zh-culture-tea-ceremony": "功夫茶讲究用小壶小杯，第一泡的茶水用来洗茶，一般不喝。",
    # --- 理财 (zh)
    "zh-money-fund": "定投指数基金适合没有时间研究股票的人，每个月固定投入，长期下来可以摊平成本。",
    "zh-money-credit": "信用卡要在还款日之前全额还款，只还最低还款额会产生很高的利息。",
    "zh-money-emergency": "应急资金最好准备三到六个月的生活费，放在随时可以取出的活期账户里。",
    "zh-money-fraud": "任何自称公安局要求你把钱转到安全账户的电话都是诈骗，应立即挂断并报警。",
    # --- 声音与语音 (zh)
    "zh-voice-warmup": "唱歌前要做发声练习，从低音到高音慢慢哼唱，可以保护嗓子。",
    "zh-voice-hoarse": "嗓子哑的时候要少说话，多喝温水，避免吃辣的食物，一般几天就能恢复。",
    "zh-voice-podcast": "录播客时把麦克风放在嘴前十五厘米左右，并且在安静的房间里录，效果最好。",
    "zh-voice-dialect": "粤语有九个声调，比普通话的四个声调多得多，所以学起来比较难。",
    # --- extra distractors (en)
    "extra-coffee-history": "Coffee was first brewed in Yemen in the fifteenth century before spreading to Cairo, Istanbul and Venice.",
    "extra-tea-types": "Green, black and oolong teas all come from the same plant; they differ in how long the leaves oxidise.",
    "extra-mountain": "Mount Everest grows a few millimetres each year as the Indian plate keeps pushing into Asia.",
    "extra-airport": "Arrive at the airport two hours before a domestic flight and three hours before an international one.",
    "extra-phone-battery": "Turning on low power mode on a phone dims the screen and pauses background app refresh to save battery.",
    "extra-dog": "Dogs should not eat chocolate, grapes or onions, which can make them seriously ill.",
    "extra-recycling": "Glass bottles can be recycled endlessly without losing quality, unlike most plastics.",
    "extra-language": "Mandarin Chinese has four main tones, and the same syllable can mean different things in each tone.",
}

# (query, id of the passage that answers it)
QUERIES = [
    # English -> English
    ("how long should I boil an egg for a runny yolk", "cook-eggs"),
    ("why let meat rest after cooking", "cook-steak"),
    ("how much water for jasmine rice", "cook-rice"),
    ("passport validity rules for entering a country", "travel-passport"),
    ("tips against jet lag when flying east", "travel-jetlag"),
    ("weight limit for cabin bags on cheap flights", "travel-luggage"),
    ("how many hours of sleep do adults need", "health-sleep"),
    ("when should I put on sunscreen", "health-sunscreen"),
    ("how do I reset my router to factory settings", "dev-reset"),
    ("how to make a lithium battery last longer", "dev-battery"),
    ("my internet connection keeps disconnecting", "dev-wifi"),
    ("how do bees tell each other where flowers are", "nat-bees"),
    ("why does an octopus have blue blood", "nat-octopus"),
    ("what causes the northern lights", "nat-aurora"),
    ("how should I split my salary between spending and saving", "money-budget"),
    ("how far is a marathon", "sport-marathon"),
    ("how many keys does a piano have", "music-piano"),
    ("how often should the coffee machine be descaled", "man-descale"),
    ("my espresso tastes sour and runs too fast", "man-grind"),
    ("when did people first land on the moon", "hist-moon"),
    # Chinese -> Chinese
    ("饺子煮多久才熟", "zh-cook-dumpling"),
    ("泡绿茶用多少度的水", "zh-cook-tea"),
    ("北京到上海坐高铁要多长时间", "zh-travel-highspeed"),
    ("充电宝可以托运吗", "zh-travel-luggage-cn"),
    ("感冒了需要吃抗生素吗", "zh-health-cold"),
    ("空调温度设置多少最省电", "zh-dev-ac"),
    ("大熊猫一天吃多少竹子", "zh-nat-panda"),
    ("加班费怎么计算", "zh-work-overtime"),
    ("蔡伦对造纸术有什么贡献", "zh-hist-paper"),
    ("接到自称公安局让我转账的电话怎么办", "zh-money-fraud"),
    ("嗓子哑了怎么办", "zh-voice-hoarse"),
    ("智能音箱连不上网怎么重置", "zh-dev-smart-speaker"),
    # Chinese -> English
    ("护照的有效期需要多长才能出国", "travel-passport"),
    ("路由器怎么恢复出厂设置", "dev-reset"),
    ("钢琴有多少个琴键", "music-piano"),
    ("蜜蜂怎样告诉同伴花在哪里", "nat-bees"),
    # English -> Chinese
    ("how long is the Yangtze river", "zh-nat-yangtze"),
    ("when is the mid-autumn festival and what do people eat", "zh-culture-midautumn"),
    ("how often should I replace my toothbrush", "zh-health-teeth"),
    ("how much emergency savings should I keep", "zh-money-emergency"),
]
